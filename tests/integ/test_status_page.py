"""The status page at / in a real browser: headless Chromium (Debian's chromium, driven over
the DevTools protocol by chromium.py) loads it from a komd with a simulated station, a
redundant komtext line whose backup path is refused, a Modbus client line that cannot
connect and an IEC 104 client line whose connect hangs, and a komtext server line. The page
must show each line, path and station in the state komctl gives, the counters and the tags
with value, quality and both timestamps; refresh itself in the same document (a simulated
value and a value a peer sends change on it); show a peer's string value as text, never as
HTML; run under its Content-Security-Policy with no violation; and say "komd not answering"
once komd stops. Screenshots are kept in the test log directory. The answer's headers
(type, policy with the hashes of the page's own style and script, nosniff) and the same
rules as the other paths (HEAD, authentication, HTTPS) are checked without a browser."""
import base64
import hashlib
import json
import os
import re
import socket
import subprocess
import time

import tlspki
from chromium import Chromium
from komdtest import BUILD, Komd, KtPeer, check, free_port, main
from test_http import get

LOGDIR = os.path.join(BUILD, "test-logs", "integ")
EVIL = '<img src=x onerror="window.pwned=1"></td><b id=bold>bold</b>&amp; "quoted"'

# What the page shows, read from its DOM: lines (badge, text, paths, stations, counters),
# tags (the cells of each row), and the refresh count.
SHOWN = r"""(function () {
  function txt(e, sel) { var x = e.querySelector(sel); return x ? x.textContent : null; }
  var lines = {}, tags = {};
  document.querySelectorAll("#lines .line").forEach(function (c) {
    var b = c.querySelector(".head .badge"), st = {}, paths = {}, cnt = {};
    c.querySelectorAll("tr[data-station]").forEach(function (r) {
      st[r.dataset.station] = { state: txt(r, ".badge"), cls: r.querySelector(".badge").className,
                                cells: Array.from(r.cells).map(function (x) { return x.textContent; }) };
    });
    c.querySelectorAll(".path").forEach(function (p) {
      var pb = p.querySelector(".badge");
      paths[p.dataset.path] = { state: pb.textContent, cls: pb.className, text: p.textContent };
    });
    c.querySelectorAll(".counter").forEach(function (s) { cnt[s.firstChild.textContent.trim()] = s.lastChild.textContent; });
    lines[c.dataset.line] = { state: b.textContent, cls: b.className, text: txt(c, ".text"), err: txt(c, ":scope > .err"),
                              stations: st, paths: paths, counters: cnt, card: c.className };
  });
  document.querySelectorAll("#tag-rows tr").forEach(function (r) {
    var c = Array.from(r.cells).map(function (x) { return x.textContent; });
    tags[r.dataset.tag] = { type: c[1], value: c[2], quality: c[3], src: c[4], recv: c[5], from: c[6],
                            changed: r.classList.contains("changed") };
  });
  return JSON.stringify({ lines: lines, tags: tags, refreshes: document.getElementById("refreshes").textContent,
    banner: document.getElementById("banner").hidden ? null : document.getElementById("banner").textContent });
})()"""


def shown(c):
    return json.loads(c.eval(SHOWN))


def shown_when(c, pred, timeout, what):
    """shown(c) once pred holds of it, read again after each refresh of the page for at most timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        s = shown(c)
        if pred(s):
            return s
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting in the page for %s: %s" % (timeout, what, s["lines"]))
        c.until("/^(\\d+)/.exec(document.getElementById('refreshes').textContent)[1] > %d" % refreshes(c), 5,
                "the next refresh")


def refreshes(c):
    m = re.match(r"(\d+) refresh", c.eval("document.getElementById('refreshes').textContent"))
    return int(m.group(1)) if m else 0


def blackhole():
    """A listener whose accept queue is full (backlog 0, one connection never accepted):
    a further connect gets no SYN-ACK and stays in progress until its own timeout."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(0)
    filler = socket.create_connection(ls.getsockname(), timeout=5)
    return ls, filler


def conf(hport, peer, closed, hole, sport):
    return """http = { host = "127.0.0.1"; port = %d; };
tags = ( { name = "memo"; type = "string"; initial = "plain text"; } );
lines = (
 { name = "sim"; protocol = "komtext-client"; host = "127.0.0.1"; port = %d;
   stations = ( { name = "pump"; address = 1; simulation = true; period = 0.2;
     tags = ( { name = "pump.flow"; address = "flow"; type = "float"; },
              { name = "pump.on"; address = "on"; type = "bool"; } ); } ); },
 { name = "plc"; type = "tcp-redundant"; protocol = "komtext-client"; redundancy = "parallel";
   host = "127.0.0.1"; port = %d; backup = { host = "127.0.0.1"; port = %d; };
   connect_timeout = 2; reconnect_delay = 0.2; reconnect_max = 0.5;
   stations = ( { name = "dev"; address = 1; period = 0.5;
     tags = ( { name = "dev.text"; address = "text"; type = "string"; },
              { name = "dev.level"; address = "level"; type = "int"; } ); } ); },
 { name = "mb"; protocol = "modbus-client"; host = "127.0.0.1"; port = %d; reconnect_delay = 0.2; reconnect_max = 0.5;
   stations = ( { name = "unit9"; address = 9; period = 1;
     tags = ( { name = "mb.reg"; address = "3.0"; type = "int"; } ); } ); },
 { name = "iec"; protocol = "iec104-client"; host = "127.0.0.1"; port = %d; connect_timeout = 120;
   stations = ( { name = "ca7"; address = 7;
     tags = ( { name = "iec.x"; address = "100"; type = "float"; iec_type = "M_ME_NC_1"; } ); } ); },
 { name = "out"; protocol = "komtext-server"; host = "127.0.0.1"; port = %d;
   stations = ( { name = "pub"; address = 1; tags = ( { name = "pump.flow"; address = "f"; },
                                                      { name = "memo"; address = "m"; } ); } ); } );
""" % (hport, free_port(), peer, closed, closed, hole, sport)


def same_value(text, v):
    """Is text how the page shows the JSON value v (JavaScript's String(v), a dash for null)?"""
    if v is None:
        return text == "\u2014"
    if isinstance(v, bool):
        return text == ("true" if v else "false")
    if isinstance(v, float):
        return float(text) == v
    return text == str(v)


def path(k, line, i):
    return k.line(line)["paths"][i]


def test_page_in_chromium():
    peer, (hole, filler) = KtPeer(), blackhole()
    hport, closed, sport = free_port(), free_port(), free_port()
    os.makedirs(LOGDIR, exist_ok=True)
    shot, shot_down = os.path.join(LOGDIR, "status_page.png"), os.path.join(LOGDIR, "status_page-down.png")
    try:
        with Komd(conf(hport, peer.port, closed, hole.getsockname()[1], sport)).start() as k, Chromium() as c:
            k.until(lambda: peer.nconns() == 1, 10, "plc's primary path connects to the peer")
            peer.val("text", EVIL)
            peer.val("level", 41)
            k.until(lambda: k.tag("dev.text")["value"] == EVIL and k.tag("dev.level")["value"] == 41, 10,
                    "the peer's values in komd")
            k.until(lambda: path(k, "plc", 1)["last_error"] and path(k, "mb", 0)["last_error"] and
                    path(k, "iec", 0)["state"] == "connecting", 10,
                    "plc's backup and mb refused, iec connecting")
            t0 = time.monotonic()
            c.navigate("http://127.0.0.1:%d/" % hport)
            c.eval("window.sameDocument = 1")
            c.until("document.querySelectorAll('#lines .line').length == 5 && "
                    "document.querySelectorAll('#tag-rows tr').length == 7", 10, "5 lines and 7 tags")
            print("    first refresh shown %.2f s after navigating" % (time.monotonic() - t0))
            # a refused path is "connecting" for the instant of each new attempt: take a
            # refresh that caught both refused paths between attempts
            s = shown_when(c, lambda x: x["lines"]["plc"]["paths"]["backup"]["state"] == "error" and
                           x["lines"]["mb"]["paths"]["path"]["state"] == "error", 10,
                           "plc's backup and mb's path shown in error")
            st, tags = k.status(), k.ctl("tags", json_out=True)[1]["tags"]

            # every line and station, in komctl's state, coloured
            want = {"sim": ("simulated", "sim"), "plc": ("connected (degraded)", "ok"), "mb": ("error", "bad"),
                    "iec": ("connecting", "warn"), "out": ("listening", "ok")}
            for l in st["lines"]:
                got = s["lines"].get(l["name"])
                check(got is not None, "line %s on the page: %s" % (l["name"], list(s["lines"])))
                check((got["state"], got["cls"]) == (want[l["name"]][0], "badge " + want[l["name"]][1]),
                      "line %s shown %s (%s), want %s" % (l["name"], got["state"], got["cls"], want[l["name"]]))
                check(got["card"] == "line " + want[l["name"]][1], "line %s's card: %s" % (l["name"], got["card"]))
                for stn in l["stations"]:
                    g = got["stations"].get(stn["name"])
                    check(g and g["state"] == stn["state"], "station %s/%s shown %s, komctl says %s" % (
                        l["name"], stn["name"], g and g["state"], stn["state"]))
                    check(g["cells"][1] == stn["address"] and g["cells"][3] == str(stn["tags"]),
                          "station %s/%s's address and tag count: %s" % (l["name"], stn["name"], g["cells"]))
                check(set(got["stations"]) == {x["name"] for x in l["stations"]}, "stations of %s" % l["name"])
                for name in ("bytes in", "frames out", "connects", "failovers", "protocol errors", "rejected",
                             "TLS failures"):
                    check(re.fullmatch(r"\d+", got["counters"].get(name, "")), "line %s's counter %r: %s" % (
                        l["name"], name, got["counters"]))
                for name, v in l["protocol_counters"].items():
                    text = got["counters"].get(re.sub(r"_total$", "", name).replace("_", " "))
                    # a labelled family (Modbus exceptions by code): "1: 0, 2: 0, ..., other: 0"
                    family = (", ".join("%s: %s" % kv for kv in v.items()) if isinstance(v, dict)
                              else None)
                    check(text is not None and (re.fullmatch(r"\d+", text) if family is None else text == family),
                          "line %s's protocol counter %s: %r, komctl %r" % (l["name"], name, text, v))
            check(s["lines"]["sim"]["stations"]["pump"]["cls"] == "badge sim", "simulated station in blue")
            check(s["lines"]["plc"]["stations"]["dev"]["cls"] == "badge ok", "station dev ok in green")
            plc = s["lines"]["plc"]["paths"]
            check(plc["primary"]["state"] == "connected" and "127.0.0.1:%d via primary" % peer.port in
                  plc["primary"]["text"], "plc's primary path connected: %s" % plc)
            check(plc["backup"]["state"] == "error" and plc["backup"]["cls"] == "badge bad" and
                  "Connection refused" in plc["backup"]["text"], "plc's backup path in error, with its reason: %s"
                  % plc["backup"])
            mb = s["lines"]["mb"]
            check(mb["paths"]["path"]["state"] == "error" and "Connection refused" in mb["paths"]["path"]["text"]
                  and "Connection refused" in mb["text"], "mb's error with its reason: %s" % mb)
            check(s["lines"]["iec"]["paths"]["path"]["cls"] == "badge warn" and
                  "connecting 127.0.0.1:%d" % hole.getsockname()[1] in s["lines"]["iec"]["text"],
                  "iec connecting: %s" % s["lines"]["iec"])
            check(s["lines"]["out"]["text"] == "listening on 127.0.0.1:%d; 0 clients" % sport,
                  "out's state text: %s" % s["lines"]["out"]["text"])
            check(int(s["lines"]["plc"]["counters"]["connects"]) >= 1, "plc's connects counted")

            # every tag with komctl's type and quality; timestamps and values of those that stay
            for t in tags:
                g = s["tags"].get(t["name"])
                check(g and g["type"] == t["type"] and g["quality"] == t["quality"],
                      "tag %s shown %s, komctl says %s %s" % (t["name"], g, t["type"], t["quality"]))
                check(g["from"] == ("%s/%s@%s" % (t["source"]["line"], t["source"]["station"], t["source"]["address"])
                                    if t["source"] else "(memory)"), "tag %s's source: %s" % (t["name"], g["from"]))
                if t["name"] in ("memo", "dev.text", "dev.level", "mb.reg", "iec.x"):
                    check(same_value(g["value"], t["value"]) and (g["src"], g["recv"]) == (
                        t["source_time"], t["receive_time"]), "tag %s shown %s, komctl says %s" % (t["name"], g, t))
            check(s["tags"]["mb.reg"]["quality"] == "IV" and s["tags"]["dev.level"]["quality"] == "good",
                  "qualities: %s / %s" % (s["tags"]["mb.reg"], s["tags"]["dev.level"]))
            check(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", s["tags"]["pump.flow"]["src"]),
                  "a source time: %s" % s["tags"]["pump.flow"]["src"])

            # a peer's string is text: no element made of it, no script run
            check(s["tags"]["dev.text"]["value"] == EVIL, "the peer's string shown as text: %r" %
                  s["tags"]["dev.text"]["value"])
            check(c.eval("document.querySelectorAll('img, #bold').length") == 0 and
                  c.eval("typeof window.pwned") == "undefined", "no element made of the peer's string")

            # the page refreshes itself, in the same document
            n, flow = refreshes(c), s["tags"]["pump.flow"]["value"]
            peer.val("level", 42)
            c.until("document.querySelector('tr[data-tag=\"dev.level\"] td.value').textContent == '42'", 10,
                    "the peer's new value on the page")
            c.until("(%s) && document.querySelector('tr[data-tag=\"pump.flow\"] td.value').textContent != %s" % (
                "/^(\\d+)/.exec(document.getElementById('refreshes').textContent)[1] >= %d" % (n + 2),
                json.dumps(flow)), 15, "two more refreshes and a new simulated value")
            check(c.eval("window.sameDocument") == 1, "the page refreshed without reloading")
            check(re.search(r"updated \d\d:\d\d:\d\d", c.eval("document.getElementById('updated').textContent")),
                  "the time of the last refresh is shown")
            print("    %d refreshes in %.1f s" % (refreshes(c), time.monotonic() - t0))
            msgs = c.messages()
            check(not any("Content Security Policy" in m or m.startswith("exception") for m in msgs),
                  "no CSP violation nor exception in the page: %s" % msgs)
            print("    screenshot: %s (%d bytes)" % (shot, c.screenshot(shot)))

            # komd gone: the banner says so, the data stays
            k.stop()
            c.until("!document.getElementById('banner').hidden", 10, "the banner")
            s2 = shown(c)
            check(s2["banner"].startswith("komd not answering since ") and "plc" in s2["lines"],
                  "banner %r, the lines kept" % s2["banner"])
            print("    screenshot without komd: %s (%d bytes)" % (shot_down, c.screenshot(shot_down, full=False)))
    finally:
        peer.close()
        filler.close()
        hole.close()


def test_headers_and_rules():
    d = tlspki.server_pki("komdpage-")
    hash_ = subprocess.run(["openssl", "passwd", "-6", "-salt", "komdpagesalt", "pw"], capture_output=True,
                           text=True, check=True).stdout.strip()
    with open(os.path.join(d, "users"), "w") as f:
        f.write("ops:%s\n" % hash_)
    hport, aport = free_port(), free_port()
    with Komd('http = { host = "127.0.0.1"; port = %d; };\n' % hport).start():
        st, hdr, body = get(hport, "/")
        page = body.decode()
        check(st == 200 and hdr["Content-Type"] == "text/html; charset=utf-8", "/: %s %s" % (st, hdr["Content-Type"]))
        check(hdr["X-Content-Type-Options"] == "nosniff", "nosniff")
        csp = hdr["Content-Security-Policy"]
        check("unsafe" not in csp and "default-src 'none'" in csp and "connect-src 'self'" in csp, "CSP: %s" % csp)
        for tag, key in (("script", "script-src"), ("style", "style-src")):
            inner = re.findall(r"<%s>(.*?)</%s>" % (tag, tag), page, re.S)
            check(len(inner) == 1, "one %s element" % tag)
            h = base64.b64encode(hashlib.sha256(inner[0].encode()).digest()).decode()
            check("%s 'sha256-%s'" % (key, h) in csp, "%s's hash in the policy: %s" % (tag, csp))
        check(not re.search(r"<(script|link|img)[^>]+(src|href)=\"(https?:)?//", page) and "@import" not in page
              and "url(" not in page, "nothing external")
        check(not re.search(r"\s(on\w+|style)=", page), "no inline handler or style attribute")
        check(".innerHTML" not in page and "insertAdjacentHTML" not in page and "eval(" not in page,
              "no HTML made of strings")
        check(get(hport, "/", method="HEAD")[0] == 200, "HEAD /")
        check(get(hport, "/", method="POST", data=b"x")[0] == 405, "read-only: POST / refused")
        check(get(hport, "/index.html")[0] == 404, "only /")
    conf = 'http = { host = "127.0.0.1"; port = %d; auth_file = "%s/users"; tls = { my_cert = "%s/srv.pem"; ' \
           'my_key = "%s/srv.key"; }; };\n' % (aport, d, d, d)
    with Komd(conf).start():
        ca = os.path.join(d, "ca.pem")
        check(get(aport, "/", ca=ca)[0] == 401, "/ needs the credentials as the other paths")
        auth = {"Authorization": "Basic " + base64.b64encode(b"ops:pw").decode()}
        st, hdr, body = get(aport, "/", headers=auth, ca=ca)
        check(st == 200 and b"<title>komd status</title>" in body, "/ over HTTPS with credentials: %s" % st)
    subprocess.run(["rm", "-rf", d])


if __name__ == "__main__":
    main([test_headers_and_rules, test_page_in_chromium])
