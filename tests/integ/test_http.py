"""The HTTP endpoint (komd.conf http): /metrics is valid Prometheus text (promtool, from
Debian's package unpacked into build/prometheus by make) and says what komctl status says;
a real Prometheus server scrapes komd and answers queries on its series; /api/status and
/api/tags are komctl --json's JSON; bad clients (oversize, slow, too many, wrong
credentials, methods that would write) are refused while komd keeps serving."""
import calendar
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import tlspki
from komdtest import BUILD, Komd, check, free_port, main, run_komd

PROM_BIN = os.path.join(BUILD, "prometheus", "usr", "bin")


def get(port, path, headers=None, method="GET", data=None, timeout=5, ca=None):
    """(status, headers, body) of one request to komd on 127.0.0.1 (HTTPS trusting ca)."""
    req = urllib.request.Request("http%s://127.0.0.1:%d%s" % ("s" if ca else "", port, path), headers=headers or {},
                                 method=method, data=data)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ssl.create_default_context(cafile=ca) if ca
                                    else None) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def metrics(port):
    """{(name, frozenset(labels)): value} of /metrics."""
    st, _, body = get(port, "/metrics")
    check(st == 200, "/metrics answers 200: %s" % st)
    out = {}
    for line in body.decode().splitlines():
        m = re.match(r'^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$', line)
        if m:
            labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def m(ms, name, **labels):
    return ms.get((name, frozenset(labels.items())))


def pair_conf(d, hport, sport, extra=""):
    """A komtext server (TLS, serving a memory tag) and a komtext client acquiring it."""
    return """http = { host = "127.0.0.1"; port = %d; timeout = 1; max_clients = 4; max_request = 2048; %s };
tags = ( { name = "mem.a"; type = "int"; initial = 7; }, { name = "mem.b"; type = "string"; initial = "x\\"y"; } );
lines = (
 { name = "srv"; protocol = "komtext-server"; host = "127.0.0.1"; port = %d;
   tls = { my_cert = "%s/srv.pem"; my_key = "%s/srv.key"; };
   stations = ( { name = "out"; address = 1; tags = ( { name = "mem.a"; address = "a"; } ); } ); },
 { name = "cli"; protocol = "komtext-client"; host = "127.0.0.1"; port = %d; reconnect_delay = 0.1;
   tls = { partner_certs = "%s/ca.pem"; };
   stations = ( { name = "dev"; address = 1; delay = 0.1;
     tags = ( { name = "got.a"; address = "a"; type = "int"; } ); } ); } );
""" % (hport, extra, sport, d, d, sport, d)


def pki():
    return tlspki.server_pki("komdhttp-")


def test_metrics_match_status_and_promtool():
    d, hport, sport = pki(), free_port(), free_port()
    with Komd(pair_conf(d, hport, sport)).start() as k:
        k.until(lambda: k.tag("got.a")["value"] == 7, 10, "the client acquires mem.a over TLS")
        st, hdr, body = get(hport, "/metrics")
        check(st == 200 and "version=0.0.4" in hdr["Content-Type"], "text format 0.0.4: %s" % hdr["Content-Type"])
        r = subprocess.run([os.path.join(PROM_BIN, "promtool"), "check", "metrics"], input=body,
                           capture_output=True, timeout=20)
        check(r.returncode == 0, "promtool check metrics: %s %s" % (r.stdout, r.stderr))
        ms = metrics(hport)
        cli = k.line("cli")
        check(m(ms, "komd_line_connects_total", line="cli") == cli["counters"]["connects"],
              "connects as komctl status: %s vs %s" % (m(ms, "komd_line_connects_total", line="cli"), cli["counters"]))
        check(m(ms, "komd_path_state", line="cli", path="primary", state="connected") == 1, "cli's path connected")
        check(m(ms, "komd_path_state", line="cli", path="primary", state="waiting") == 0, "one state at a time")
        check(m(ms, "komd_station_state", line="cli", station="dev", state="ok") == 1, "station dev ok")
        check(m(ms, "komd_station_polls_total", line="cli", station="dev") > 0, "polls counted")
        check(m(ms, "komd_komtext_pings_total", line="srv") is not None, "the protocol's own counter, prefixed komd_")
        check(m(ms, "komd_tags", quality="good") == 3, "three good tags: %s" % m(ms, "komd_tags", quality="good"))
        end = subprocess.run(["openssl", "x509", "-in", os.path.join(d, "srv.pem"), "-noout", "-enddate"],
                             capture_output=True, text=True).stdout.strip().split("=", 1)[1]
        not_after = calendar.timegm(time.strptime(end.replace("  ", " "), "%b %d %H:%M:%S %Y GMT"))
        v = [val for (n, ls), val in ms.items() if n == "komd_tls_cert_not_after_seconds" and
             ("line", "srv") in ls and ("role", "my_cert") in ls]
        check(v == [not_after], "the server certificate's notAfter: %s vs %s" % (v, not_after))
        check(m(ms, "process_open_fds") > 5 and m(ms, "process_resident_memory_bytes") > 1e6, "process metrics")
        check(abs(m(ms, "process_start_time_seconds") - time.time()) < 60, "process start time")
        # reloads and their results
        k.ctl("reload")
        with open(k.conf, "a") as f:
            f.write("\nnot valid")
        k.ctl("reload", check=False)
        ms = metrics(hport)
        check(m(ms, "komd_reloads_total", result="applied") == 1 and m(ms, "komd_reloads_total", result="refused") == 1,
              "reloads by result: %s" % [(n, v) for (n, _), v in ms.items() if "reload" in n])
        check(m(ms, "komd_config_last_reload_successful") == 0, "the last reload was refused")


def test_api_is_komctl_json():
    hport = free_port()
    conf = """http = { port = %d; };
tags = ( { name = "demo.x"; type = "float"; initial = 1.5; }, { name = "demo.y"; type = "string"; initial = "a\\u00e9"; },
         { name = "other"; type = "bool"; initial = true; }, %s );
lines = ( { name = "idle"; protocol = "komtext-server"; host = "127.0.0.1"; port = %d; } );
""" % (hport, ", ".join('{ name = "bulk.%d"; type = "int"; initial = %d; }' % (i, i) for i in range(100)), free_port())
    with Komd(conf).start() as k:
        st, hdr, body = get(hport, "/api/status")
        check(st == 200 and hdr["Content-Type"] == "application/json", "/api/status: %s" % st)
        check(json.loads(body) == k.status(), "/api/status is komctl --json status")
        for glob in ("demo.*", "*", "nothing*"):
            st, _, body = get(hport, "/api/tags?glob=" + urllib.parse.quote(glob, safe=""))
            want = k.ctl("tags", glob, json_out=True)[1]
            check(st == 200 and json.loads(body) == want, "/api/tags?glob=%s is komctl --json tags %s" % (glob, glob))
        st, _, body = get(hport, "/api/tags")
        check(json.loads(body) == k.ctl("tags", json_out=True)[1], "/api/tags without glob: every tag")
        check(get(hport, "/nothing")[0] == 404, "404 for other paths")
        # keep-alive: an answer (here 20 kB, sent as head and body) is not held by Nagle
        # against the client's delayed ACK (40 ms)
        c, times = http.client.HTTPConnection("127.0.0.1", hport, timeout=5), []
        for _ in range(21):
            t = time.monotonic()
            c.request("GET", "/api/tags")
            r = c.getresponse()
            check(r.status == 200 and len(r.read()) > 16384, "keep-alive /api/tags")
            times.append(time.monotonic() - t)
        c.close()
        check(sorted(times)[10] < 0.02, "a keep-alive request's median under 20 ms: %s" % sorted(times)[10])


class Prometheus:
    """A Prometheus server (build/prometheus) on a free loopback port, scraping komd's
    /metrics on hport every second, its data in directory d; stops on leaving the with."""

    def __init__(self, d, hport):
        self.port = free_port()
        with open(os.path.join(d, "prometheus.yml"), "w") as f:
            f.write("global: { scrape_interval: 1s }\nscrape_configs:\n  - job_name: komd\n"
                    "    static_configs: [ { targets: ['127.0.0.1:%d'] } ]\n" % hport)
        self.proc = subprocess.Popen([os.path.join(PROM_BIN, "prometheus"), "--config.file=" + d + "/prometheus.yml",
                                      "--storage.tsdb.path=" + d + "/data",
                                      "--web.listen-address=127.0.0.1:%d" % self.port],
                                     stdout=subprocess.DEVNULL, stderr=open(d + "/prometheus.log", "w"))

    def query(self, q):
        """The result of an instant query ([] while Prometheus is not up yet, or on error)."""
        try:
            st, _, body = get(self.port, "/api/v1/query?query=" + urllib.parse.quote(q), timeout=2)
        except OSError:
            return []
        return json.loads(body)["data"]["result"] if st == 200 else []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(10)


def test_prometheus_scrapes_komd():
    d, hport, sport = pki(), free_port(), free_port()
    with Komd(pair_conf(d, hport, sport)).start() as k, Prometheus(d, hport) as prom:
        k.until(lambda: k.tag("got.a")["value"] == 7, 10, "the client acquires mem.a")
        res = k.until(lambda: prom.query('komd_station_state{station="dev",state="ok"} == 1'), 30,
                      "Prometheus to scrape komd's station state")
        print("query komd_station_state{station=\"dev\",state=\"ok\"} == 1 -> %s" % json.dumps(res))
        res = k.until(lambda: prom.query("rate(komd_line_received_frames_total{line=\"cli\"}[5s]) > 0"), 30,
                      "a rate of komd's frame counter")
        print("query rate(komd_line_received_frames_total{line=\"cli\"}[5s]) > 0 -> %s" % json.dumps(res))
        up = prom.query('up{job="komd"}')
        check(up and up[0]["value"][1] == "1", "the komd target is up: %s" % up)


def raw(port, data, wait_close=3.0):
    """Send data on a fresh connection; (answer bytes, closed by komd)."""
    s = socket.create_connection(("127.0.0.1", port), 2)
    s.settimeout(wait_close)
    got, closed = b"", False
    try:
        s.sendall(data)
        while True:
            b = s.recv(65536)
            if not b:
                closed = True
                break
            got += b
    except (socket.timeout, ConnectionResetError, BrokenPipeError):
        closed = got != b""
    s.close()
    return got, closed


def test_bad_clients_refused():
    d, hport = tempfile.mkdtemp(prefix="komdhttp-"), free_port()
    hash_ = subprocess.run(["openssl", "passwd", "-6", "-salt", "komdtestsalt", "s3cret"], capture_output=True,
                           text=True).stdout.strip()
    with open(os.path.join(d, "users"), "w") as f:
        f.write("# test users\nscraper:%s\n" % hash_)
    os.chmod(os.path.join(d, "users"), 0o640)
    conf = """http = { host = "127.0.0.1"; port = %d; timeout = 1; max_clients = 3; max_request = 2048;
  auth_file = "%s/users"; };
tags = ( { name = "m"; type = "int"; initial = 1; } );""" % (hport, d)
    ok = {"Authorization": "Basic c2NyYXBlcjpzM2NyZXQ="}  # scraper:s3cret
    with Komd(conf).start() as k:
        # credentials
        st, hdr, _ = get(hport, "/metrics")
        check(st == 401 and hdr["WWW-Authenticate"].startswith("Basic"), "no credentials: 401 (%s)" % st)
        check(get(hport, "/metrics", {"Authorization": "Basic c2NyYXBlcjp3cm9uZw=="})[0] == 401, "wrong password")
        check(get(hport, "/metrics", {"Authorization": "Basic !!!!"})[0] == 401, "not base64")
        for _ in range(10):
            check(get(hport, "/metrics", ok)[0] == 200, "the right password")
        hashes = re.search(rb"\nkomd_http_auth_hashes_total (\d+)", get(hport, "/metrics", ok)[2])
        check(hashes and int(hashes.group(1)) == 2, "hashed once for the wrong password and once for the right "
              "one, not for each of 11 requests: %s" % (hashes and hashes.group(1)))
        # read-only
        for method in ("POST", "PUT", "DELETE"):
            st, hdr, _ = get(hport, "/api/tags", ok, method=method, data=b"{}")
            check(st == 405 and hdr["Allow"] == "GET, HEAD", "%s: 405 with Allow (%s)" % (method, st))
        # oversize: a header past max_request
        got, closed = raw(hport, b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4000 + b"\r\n\r\n")
        check(re.match(rb"HTTP/1.1 (413|400)", got) and closed, "oversize request refused and closed: %r" % got[:60])
        # not HTTP at all
        for junk in (b"GARBAGE\r\n\r\n", b"GET /metrics\x00 HTTP/1.1\r\n\r\n", b"\x16\x03\x01\x00\x05hello\r\n\r\n"):
            got, closed = raw(hport, junk)
            check(closed and not got.startswith(b"HTTP/1.1 200"), "%r: refused and closed: %r" % (junk, got[:40]))
        # slow: a byte every 0.2 s is cut at timeout (1 s), and others are served meanwhile
        s = socket.create_connection(("127.0.0.1", hport))
        t0, cut, served = time.monotonic(), None, []
        for i, ch in enumerate(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"z" * 40):
            try:
                s.send(bytes([ch]))
            except OSError:
                cut = time.monotonic() - t0
                break
            if i % 5 == 0:
                t1 = time.monotonic()
                served.append((get(hport, "/metrics", ok)[0], time.monotonic() - t1))
            time.sleep(0.2)  # the slow client's own pace, not a synchronisation
        s.close()
        check(cut is not None and cut < 3.0, "the slow client is cut near timeout: %s" % cut)
        check(all(st == 200 and dt < 0.5 for st, dt in served), "others served meanwhile: %s" % served)
        # too many: max_clients 3 idle connections, the next is answered 503
        idle = [socket.create_connection(("127.0.0.1", hport)) for _ in range(3)]
        got, closed = raw(hport, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        check(got.startswith(b"HTTP/1.1 503") and closed, "over max_clients: 503 and closed: %r" % got[:40])
        for s in idle:
            s.close()
        k.until(lambda: get(hport, "/metrics", ok)[0] == 200, 5, "served again once they are gone")
        ms = {}
        for line in get(hport, "/metrics", ok)[2].decode().splitlines():
            if line.startswith("komd_http_"):
                n, v = line.split(" ")
                ms[n] = float(v)
        check(ms["komd_http_refused_connections_total"] >= 1 and ms["komd_http_timeouts_total"] >= 1 and
              ms["komd_http_auth_failures_total"] == 3 and
              ms["komd_http_auth_hashes_total"] == 2, "counted: %s" % ms)
        k.until(lambda: get(hport, "/metrics", ok)[2].count(b"komd_http_connections 1\n") == 1, 5,
                "connections counted out (only this one left)")
        check(k.status()["lines"] == [], "komctl still answers")


def test_https_and_reload():
    d, hport, hport2 = pki(), free_port(), free_port()
    conf = """http = { host = "127.0.0.1"; port = %d; tls = { my_cert = "%s/srv.pem"; my_key = "%s/srv.key"; }; };
tags = ( { name = "m"; type = "int"; initial = 1; } );""" % (hport, d, d)
    with Komd(conf).start() as k:
        st, _, body = get(hport, "/metrics", ca=d + "/ca.pem")
        check(st == 200, "HTTPS /metrics: %s" % st)
        check(re.search(r'komd_tls_cert_not_after_seconds\{role="my_cert",file="%s/srv.pem",subject="[^"]*srv"\} \d'
                        % re.escape(d), body.decode()), "the endpoint's own certificate in the metrics")
        got, closed = raw(hport, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        check(b"200 OK" not in got, "no plain HTTP on the HTTPS port: %r" % got[:40])
        # a reload that moves the endpoint (and drops TLS): the old port closes, the new serves
        k.write_conf("""http = { host = "127.0.0.1"; port = %d; };
tags = ( { name = "m"; type = "int"; initial = 1; } );""" % hport2)
        k.ctl("reload")
        check(get(hport2, "/metrics")[0] == 200, "served on the new port after the reload")
        try:
            socket.create_connection(("127.0.0.1", hport), 1).close()
            moved = False
        except OSError:
            moved = True
        check(moved, "the old port is closed")
        # a configuration whose http TLS files are broken is refused as a whole
        with open(k.conf, "w") as f:
            f.write('control_socket = "%s";\nhttp = { port = %d; tls = { my_cert = "%s/ca.pem"; my_key = "%s/srv.key"; }; };'
                    % (k.sock, hport2, d, d))
        check(k.ctl("reload", check=False)[0] != 0, "a key that does not match the certificate: reload refused")
        check(get(hport2, "/metrics")[0] == 200, "still served after the refused reload")


def test_config_errors():
    d = tempfile.mkdtemp(prefix="komdhttp-")
    cases = [
        ('http = { host = "127.0.0.1"; };', r":1: missing required key 'port' in http"),
        ("http = { port = 99999; };", r":1: .*port.*65535"),
        ("http = { port = 9464; bogus = 1; };", r":1: unknown key 'bogus' in http"),
        ('http = { port = 9464; host = "no such address"; };', r":1: 'host': "),
        ("http = 5;", r":1: 'http' must be a group"),
        ('http = { port = 9464; auth_file = "%s/none"; };' % d, r":1: 'auth_file': cannot read"),
        ('http = { port = 9464;\n  tls = { my_cert = "%s/none.pem"; }; };' % d, r":2: .*my_cert"),
    ]
    for text, want in cases:
        path = os.path.join(d, "k.conf")
        with open(path, "w") as f:
            f.write(text + "\n")
        r = run_komd("-t", "-c", path)
        check(r.returncode == 1 and re.search(re.escape(path) + want, r.stderr),
              "komd -t on %r: exit 1 and /%s/: %d %s" % (text, want, r.returncode, r.stderr))


if __name__ == "__main__":
    main([test_metrics_match_status_and_promtool, test_api_is_komctl_json, test_prometheus_scrapes_komd,
          test_bad_clients_refused, test_https_and_reload, test_config_errors])
