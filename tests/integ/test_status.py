"""What the operator sees is true: a station is "ok" only once its device has answered (a TCP
connect proves nothing), and "communication lost" / "communication restored" come in pairs,
each once, with the reason; a station in error never logs a false "communication ok"."""
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time

from komdtest import KOMCTL, KtPeer, Komd, check, free_port, main, serve
from mbpeers import RawServer


def kt_conf(port, extra="delay = 0.1; response_timeout = 0.3;"):
    return """lines = ( { name = "cli"; protocol = "komtext-client"; host = "127.0.0.1"; port = %d;
  reconnect_delay = 0.1; reconnect_max = 0.2;
  stations = ( { name = "dev"; address = 1; %s
    tags = ( { name = "t"; address = "t"; type = "int"; } ); } ); } );""" % (port, extra)


def station(k, line="cli"):
    return k.line(line)["stations"][0]


def comm_lines(k):
    return [l for l in k.lines if re.search(r"station dev: communication (ok|lost|restored|error)", l)]


def test_ok_only_after_an_answer():
    # komtext: connected, but the device never answers a poll
    peer = KtPeer("127.0.0.1", answer=False)
    with Komd(kt_conf(peer.port, "delay = 0.1; response_timeout = 2;")).start() as k:
        k.until(lambda: peer.nconns() == 1 and peer.received("PING"), 5, "connected and polled")
        check(station(k)["state"] == "waiting", "connected is not ok: %s" % station(k))
        peer.answer = True
        k.until(lambda: station(k)["state"] == "ok", 5, "ok once the device answered")
        k.wait_log(r"line cli: station dev: communication (ok|restored)")
    peer.close()
    # IEC 104: connected, STARTDT act sent, never confirmed: not "ok" (a controlled station
    # of scapy's IEC 104 layer that does not answer STARTDT)
    from iec104peer import PeerServer
    srv = PeerServer(name="no STARTDT con", answer_startdt=False)
    try:
        conf = """lines = ( { name = "cli"; protocol = "iec104-client"; host = "127.0.0.1"; port = %d; t1 = 10;
  stations = ( { name = "dev"; address = 1; tags = (
    { name = "c.f"; address = "101"; type = "float"; iec_type = "M_ME_NC_1"; } ); } ); } );""" % srv.port
        with Komd(conf).start() as k:
            p = srv.wait_conn(1)
            p.wait_u("STARTDT_ACT")
            check(k.line("cli")["paths"][0]["state"] == "connected" and station(k)["state"] == "waiting",
                  "STARTDT not confirmed: not ok: %s" % station(k))
            p.send_u("STARTDT_CON")
            k.until(lambda: station(k)["state"] == "waiting", 2, "confirmed, no data yet: still waiting")
    finally:
        srv.close()
    # Modbus: a unit that never answers is never "ok"
    dev = RawServer({1: "silent"})
    conf = """lines = ( { name = "cli"; protocol = "modbus-client"; host = "127.0.0.1"; port = %d;
  stations = ( { name = "dev"; address = 1; period = 0.2; response_timeout = 3;
    tags = ( { name = "x"; address = "3.0"; type = "int"; } ); } ); } );""" % dev.port
    with Komd(conf).start() as k:
        k.until(lambda: dev.count(fc=3) >= 1, 5, "polled")
        check(station(k)["state"] == "waiting", "a silent unit is not ok: %s" % station(k))
        check(not [l for l in k.lines if "communication ok" in l], "no communication ok")
    dev.close()


def test_lost_and_restored_in_pairs():
    peer = KtPeer("127.0.0.1")
    with Komd(kt_conf(peer.port)).start() as k:
        k.until(lambda: station(k)["state"] == "ok", 5, "ok")
        # the device stops answering: lost, once, with the reason
        peer.answer = False
        k.wait_log(r"line cli: station dev: communication lost: no answer to a poll within 0\.3 s")
        k.until(lambda: len(peer.received("PING")) >= 4, 5, "polls go on")
        # then its connection drops in the middle of a poll: still one "lost", no "ok"
        with peer.lock:
            conns = list(peer.conns)
        for c in conns:
            c.shutdown(2)
        k.until(lambda: peer.accepted >= 2, 5, "reconnected")
        k.until(lambda: len(peer.received("PING")) >= 8, 5, "polled again")
        lines = comm_lines(k)
        check(sum("communication lost" in l for l in lines) == 1 and not any("communication ok" in l or "restored" in l
                                                                             for l in lines[1:]),
              "one lost, nothing else while in error:\n%s" % "\n".join(lines))
        check(station(k)["state"] == "error", "still in error: %s" % station(k))
        # the device answers again: restored, once, with the outage's length
        peer.answer = True
        k.wait_log(r"line cli: station dev: communication restored after \d+\.\d s")
        k.until(lambda: station(k)["state"] == "ok", 5, "ok")
        k.until(lambda: len(peer.received("PING")) >= 12, 5, "polled on")
        lines = comm_lines(k)
        check([re.search(r"communication (\w+)", l).group(1) for l in lines] == ["ok", "lost", "restored"],
              "ok, lost, restored: each once:\n%s" % "\n".join(lines))
    peer.close()


def test_komctl_shows_where_a_tag_comes_from_and_goes():
    peer = KtPeer("127.0.0.1")
    conf = """lines = (
  { name = "cli"; protocol = "komtext-client"; host = "127.0.0.1"; port = %d;
    stations = ( { name = "dev"; address = 1; tags = ( { name = "t"; address = "a1"; type = "int"; } ); } ); },
  { name = "ksrv"; protocol = "komtext-server"; host = "127.0.0.1"; port = %d;
    stations = ( { name = "pub"; address = 1; tags = ( { name = "t"; address = "tt"; } ); } ); },
  { name = "msrv"; protocol = "modbus-server"; host = "127.0.0.1"; port = %d;
    stations = ( { name = "u1"; address = 1; tags = ( { name = "t"; address = "3.10"; } ); } ); } );""" % (
        peer.port, free_port(), free_port())
    with Komd(conf).start() as k:
        out = k.ctl("get", "t")[1]
        check(re.search(r" from cli/dev@a1 served by (ksrv/pub@tt, msrv/u1@3\.10|msrv/u1@3\.10, ksrv/pub@tt)$", out.strip()),
              "get: %s" % out)
        check(" from cli/dev@a1 served by " in k.ctl("tags")[1], "tags too")
        j = k.tag("t")
        check(j["source"] == {"line": "cli", "station": "dev", "address": "a1"}, "source: %s" % j)
        check(sorted((x["line"], x["station"], x["address"]) for x in j["served_by"]) ==
              [("ksrv", "pub", "tt"), ("msrv", "u1", "3.10")], "served_by: %s" % j)
    peer.close()


def test_string_values_stay_on_their_line():
    """A string with a newline (a device's, or a memory tag's) cannot fake lines of output."""
    with Komd('tags = ( { name = "note"; type = "string"; initial = "a\\nFAKE line\\tx"; } );\nlines = ();').start() as k:
        out = k.ctl("get", "note")[1]
        check(out.count("\n") == 1 and "a\\x0aFAKE line\\x09x" in out, "one line: %r" % out)
        check(k.tag("note")["value"] == "a\nFAKE line\tx", "JSON keeps the value as it is")
        # a value longer than any buffer on the way (the request's limit is 8 KiB)
        long = "\u00e9" * 4000
        k.ctl("set", "note", long)
        check(k.tag("note")["value"] == long and k.ctl("tags", json_out=True)[1]["tags"][0]["value"] == long,
              "a long value whole in --json get and tags")


def ping(port, n):
    """n komtext PINGs from a plain socket; returns once the n PONGs are back."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(b"".join(b"PING %d\n" % i for i in range(1, n + 1)))
        got = b""
        while got.count(b"PONG ") < n:
            d = c.recv(4096)
            check(d, "komd closed before %d PONGs: %r" % (n, got))
            got += d


def test_protocol_counters():
    """A protocol's own counters (komtext-server's komtext_pings_total): in the text after the
    line's core counters, in --json as protocol_counters; a restarted line's start at zero, a
    kept line's are kept. A protocol without counters has an empty object and no such line."""
    port = free_port()
    srv = """{ name = "srv"; protocol = "komtext-server"; host = "127.0.0.1"; port = %d; %s
    stations = ( { name = "s"; address = 1; tags = ( { name = "m"; address = "m"; } ); } ); }"""
    cli = """{ name = "cli"; protocol = "komtext-client"; host = "127.0.0.1"; port = 1;
    stations = ( { name = "sim"; simulation = true; period = 3600; tags = ( { name = "x"; type = "int"; } ); } ); }"""
    conf = 'tags = ( { name = "m"; type = "int"; initial = 1; } );\nlines = ( %s, %s );'
    with Komd(conf % (srv % (port, ""), cli)).start() as k:
        check(k.line("srv")["protocol_counters"] == {"komtext_pings_total": 0}, "zero at start")
        ping(port, 3)
        out = k.ctl("status")[1]
        check(re.search(r"\nline srv \(komtext-server, tcp\): .*\n  bytes in .*tls failures 0\n"
                        r"  komtext_pings_total 3\n  station s ", "\n" + out), "text: %s" % out)
        check(re.search(r"\nline cli .*\n  bytes in .*\n  station sim ", "\n" + out), "none for komtext-client: %s" % out)
        j = k.status()["lines"]
        check(j[0]["protocol_counters"] == {"komtext_pings_total": 3} and j[1]["protocol_counters"] == {},
              "--json: %s" % [(l["name"], l["protocol_counters"]) for l in j])
        check(list(j[0])[list(j[0]).index("counters") + 1] == "protocol_counters", "beside the core's counters")
        # reload: srv changed (restarted: zero), cli kept
        k.write_conf(conf % (srv % (port, "max_clients = 5;"), cli))
        k.ctl("reload")
        k.until(lambda: "listening on" in k.line("srv")["state"], 5, "srv listens again")
        check(k.line("srv")["protocol_counters"] == {"komtext_pings_total": 0}, "a restarted line's start at zero")
        ping(port, 1)
        check(k.line("srv")["protocol_counters"] == {"komtext_pings_total": 1}, "and count again")
        # a reload that keeps the line keeps its counters
        k.write_conf(conf % (srv % (port, "max_clients = 5;"), cli))
        k.ctl("reload")
        check(k.line("srv")["protocol_counters"] == {"komtext_pings_total": 1}, "a kept line keeps them")


def fake_komd(path, script):
    """A control socket that takes each request and answers it with script(conn)."""
    def handle(c):
        c.recv(8192)
        script(c)
    return serve(handle, path)[0]


def test_komctl_timeout():
    d = tempfile.mkdtemp(prefix="komctl-")
    try:
        holds = []
        silent = fake_komd(os.path.join(d, "silent.sock"), holds.append)  # never answers
        t0 = time.monotonic()
        r = subprocess.run([KOMCTL, "-s", os.path.join(d, "silent.sock"), "-T", "0.5", "status"],
                           capture_output=True, text=True, timeout=10)
        took = time.monotonic() - t0
        check(r.returncode == 1 and "did not answer in time" in r.stderr and 0.4 < took < 3,
              "-T 0.5: %d %r in %.2f s" % (r.returncode, r.stderr, took))

        def waiting(c):
            # a set waiting for its device: "WAIT ms" first, the answer later than -T
            c.sendall(b"WAIT 2000\n")
            threading.Event().wait(1.2)  # the device's own time, in this fake komd: not a synchronisation
            c.sendall(b"OK\nset t = 1: done\n")
            c.close()
        fake_komd(os.path.join(d, "wait.sock"), waiting)
        r = subprocess.run([KOMCTL, "-s", os.path.join(d, "wait.sock"), "-T", "0.5", "set", "t", "1"],
                           capture_output=True, text=True, timeout=10)
        check(r.returncode == 0 and "done" in r.stdout and "WAIT" not in r.stdout,
              "WAIT extends the wait: %d %r %r" % (r.returncode, r.stdout, r.stderr))
        silent.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_reload_exit_codes():
    port, busy_port = free_port(), free_port()
    busy = socket.socket()
    busy.bind(("127.0.0.1", busy_port))
    busy.listen(1)
    line = """{ name = "%s"; protocol = "komtext-server"; host = "127.0.0.1"; port = %d; stations = (); }"""
    with Komd("lines = ( %s );" % (line % ("a", port))).start() as k:
        k.write_conf("lines = ( %s, %s );" % (line % ("a", port), line % ("b", busy_port)))
        rc, out, err = k.ctl("reload", check=False)
        check(rc == 3 and re.search(r"line b could not start: listen 127\.0\.0\.1:%d: Address already in use" % busy_port, out),
              "applied, a line failed: exit 3: %d %r %r" % (rc, out, err))
        r = subprocess.run([KOMCTL, "-s", k.sock, "--json", "reload"], capture_output=True, text=True)
        check(r.returncode == 3 and json.loads(r.stdout)["failed_lines"] == ["b"], "--json: %s" % r.stdout)
        busy.close()
        k.until(lambda: "listening on" in k.line("b")["state"], 10, "b listens once the port is free")
        check(k.ctl("reload", check=False)[0] == 0, "then exit 0")
        k.write_conf("lines = ( %s " % (line % ("a", port)))
        rc, out, err = k.ctl("reload", check=False)
        check(rc == 1 and "reload refused, nothing changed" in err, "refused: exit 1: %d %r" % (rc, err))


def test_control_socket_directory_made():
    d = tempfile.mkdtemp(prefix="komd-ctldir-")
    sock = os.path.join(d, "run", "komd", "ctl.sock")
    try:
        k = Komd('control_socket = "%s";\nlines = ();' % sock)
        k.sock = sock
        with k.start():
            check(stat.S_IMODE(os.stat(os.path.dirname(sock)).st_mode) == 0o755, "the directory made, 0755")
            k.wait_log(r"control socket .*: created its directory .*/run/komd")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main([test_ok_only_after_an_answer, test_lost_and_restored_in_pairs, test_komctl_shows_where_a_tag_comes_from_and_goes,
          test_string_values_stay_on_their_line, test_protocol_counters, test_komctl_timeout, test_reload_exit_codes,
          test_control_socket_directory_made])
