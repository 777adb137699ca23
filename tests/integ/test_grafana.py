"""contrib/grafana/komd.json, the example Grafana dashboard: a Grafana 9/10 dashboard model
(schemaVersion, a Prometheus datasource variable every panel uses, the job, instance and
line variables), and every PromQL query of its panels answers with at least one series
from a real Prometheus (build/prometheus) scraping a komd that runs every protocol: a
Modbus client polling komd's own Modbus server (one station reads a register the server
does not serve: exception 02 sent and received), an IEC 104 client and server, an IEC 104
client whose controlled station (scapy's IEC 104 layer, iec104peer.py) never confirms
STARTDT (t1 expiries), an MQTT client publishing to a mosquitto started here, and a
komtext pair over TLS (a certificate's expiry). Grafana's variables become what a short
test allows: $__rate_interval 10s (scrapes every second), template variables .*."""
import json
import os
import re

import tlspki
from iec104peer import PeerServer
from komdtest import TOP, Komd, check, free_port, main
from mqttpeers import Mosquitto
from test_http import Prometheus

DASHBOARD = os.path.join(TOP, "contrib", "grafana", "komd.json")
BUILTINS = {"__rate_interval": "10s", "__interval": "5s", "__range": "1m", "__range_s": "60"}


def promql(expr):
    """A panel's expr with Grafana's variables replaced: builtins by short durations,
    template variables ($line, ${line}, [[line]]) by .* (All)."""
    def sub(m):
        name = m.group(1) or m.group(2) or m.group(3)
        return BUILTINS.get(name, ".*")
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]", sub, expr)


def panels(d):
    """Every panel, rows' collapsed panels included."""
    for p in d["panels"]:
        yield p
        for q in p.get("panels", []):
            yield q


def conf(hport, d, mbport, iport, badport, mqport, kport):
    return """http = { host = "127.0.0.1"; port = %d; };
tags = ( { name = "m.a"; type = "int"; initial = 7; }, { name = "m.f"; type = "float"; initial = 1.5; } );
lines = (
 { name = "mbs"; protocol = "modbus-server"; host = "127.0.0.1"; port = %d;
   stations = ( { name = "u1"; address = 1; tags = ( { name = "m.a"; address = "3.0"; } ); } ); },
 { name = "mbc"; protocol = "modbus-client"; host = "127.0.0.1"; port = %d; reconnect_delay = 0.2;
   stations = ( { name = "dev"; address = 1; period = 0.2; response_timeout = 0.5; retries = 0;
                  tags = ( { name = "c.a"; address = "3.0"; type = "int"; } ); },
                { name = "gap"; address = 1; period = 0.2; response_timeout = 0.5; retries = 0;
                  tags = ( { name = "c.gap"; address = "3.50"; type = "int"; } ); } ); },
 { name = "iecs"; protocol = "iec104-server"; host = "127.0.0.1"; port = %d; t3 = 1;
   stations = ( { name = "ca1"; address = 1; tags = ( { name = "m.f"; address = "101"; iec_type = "M_ME_NC_1"; } ); } ); },
 { name = "iecc"; protocol = "iec104-client"; host = "127.0.0.1"; port = %d; reconnect_delay = 0.2;
   stations = ( { name = "ca1"; address = 1; tags = ( { name = "c.f"; address = "101"; type = "float"; } ); } ); },
 { name = "iecbad"; protocol = "iec104-client"; host = "127.0.0.1"; port = %d; t1 = 1; reconnect_delay = 0.2;
   reconnect_max = 0.5;
   stations = ( { name = "ca1"; address = 1; tags = ( { name = "b.f"; address = "101"; type = "float"; } ); } ); },
 { name = "mq"; protocol = "mqtt-client"; host = "127.0.0.1"; port = %d; reconnect_delay = 0.2;
   stations = ( { name = "pub"; tags = ( { name = "m.a"; publish = "komd/test/a"; } ); } ); },
 { name = "ktls"; protocol = "komtext-server"; host = "127.0.0.1"; port = %d;
   tls = { my_cert = "%s/srv.pem"; my_key = "%s/srv.key"; };
   stations = ( { name = "out"; address = 1; tags = ( { name = "m.a"; address = "a"; } ); } ); },
 { name = "ktlc"; protocol = "komtext-client"; host = "127.0.0.1"; port = %d; reconnect_delay = 0.2;
   tls = { partner_certs = "%s/ca.pem"; };
   stations = ( { name = "dev"; address = 1; delay = 0.2; tags = ( { name = "k.a"; address = "a"; type = "int"; } ); } ); }
);
""" % (hport, mbport, mbport, iport, iport, badport, mqport, kport, d, d, kport, d)


def test_dashboard_model():
    d = json.load(open(DASHBOARD))
    check(37 <= d["schemaVersion"] <= 39, "schemaVersion for Grafana 9/10: %s" % d["schemaVersion"])
    var = {v["name"]: v for v in d["templating"]["list"]}
    check(var.get("datasource", {}).get("type") == "datasource" and var["datasource"]["query"] == "prometheus",
          "a Prometheus datasource variable: %s" % var.get("datasource"))
    check({"job", "instance", "line"} <= set(var), "job, instance and line variables: %s" % sorted(var))
    ids = [p["id"] for p in panels(d)]
    check(len(ids) == len(set(ids)), "panel ids unique: %s" % ids)
    for p in panels(d):
        if p["type"] == "row":
            continue
        check(p.get("title") and p.get("gridPos"), "panel %s: title and gridPos" % p.get("id"))
        for t in [p] + p["targets"]:
            check(t["datasource"] == {"type": "prometheus", "uid": "${datasource}"},
                  "panel %r uses the datasource variable: %s" % (p["title"], t["datasource"]))
        check(p["targets"] and all(t.get("expr") and t.get("refId") for t in p["targets"]),
              "panel %r: each target has expr and refId" % p["title"])
    text = json.dumps(d)
    for want in ("komd_modbus_exceptions_total", "komd_iec104_t1_expiries_total", "komd_mqtt_queued_messages",
                 "komd_mqtt_queue_dropped_total", "komd_tls_cert_not_after_seconds", "komd_reloads_total",
                 "komd_tags", "process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
                 "komd_line_connects_total", "komd_line_sessions", "komd_station_state", "komd_path_state",
                 "komd_line_received_frames_total", "komd_line_received_bytes_total"):
        check(want in text, "the dashboard shows %s" % want)


def test_every_query_has_series():
    d = tlspki.server_pki("komdgrafana-")
    hport, mbport, iport, kport = free_port(), free_port(), free_port(), free_port()
    dash = json.load(open(DASHBOARD))
    bad = PeerServer(name="no STARTDT con", answer_startdt=False)
    broker = Mosquitto(persist=False).start()
    try:
        with Komd(conf(hport, d, mbport, iport, bad.port, broker.port, kport)).start() as k, \
                Prometheus(d, hport) as prom:
            def counter(line, name, code=None):
                c = k.line(line)["protocol_counters"][name]
                return c[code] if code else c
            k.until(lambda: counter("mbc", "modbus_exceptions_total", "2") > 0 and
                    counter("mbs", "modbus_exceptions_total", "2") > 0, 10, "exception 02 sent and received")
            k.until(lambda: counter("iecbad", "iec104_t1_expiries_total") > 0, 10, "a t1 expiry")
            k.until(lambda: k.tag("k.a")["value"] == 7 and k.tag("c.f")["value"] == 1.5, 10, "TLS and IEC 104 data")
            k.until(lambda: counter("mq", "mqtt_published_total") > 0, 10, "MQTT published")
            k.ctl("reload")
            # two scrapes after the events: a rate over 10 s has its two samples
            k.until(lambda: prom.query('increase(komd_iec104_t1_expiries_total{line="iecbad"}[10s]) > 0') and
                    prom.query('komd_reloads_total{result="applied"} == 1') and
                    prom.query('count_over_time(komd_modbus_exceptions_total{line="mbc",code="2"}[10s]) > 2'),
                    30, "Prometheus to scrape the events")
            empty, n = [], 0
            for p in panels(dash):
                for t in p.get("targets", []):
                    q = promql(t["expr"])
                    n += 1
                    res = prom.query(q)
                    if not res:
                        empty.append("panel %r, %s: %s" % (p["title"], t["refId"], q))
            check(not empty, "queries without a series:\n  " + "\n  ".join(empty))
            print("    %d queries of %d panels answered" % (n, len([p for p in panels(dash) if p["type"] != "row"])))
    finally:
        broker.stop()
        bad.close()


if __name__ == "__main__":
    main([test_dashboard_model, test_every_query_has_series])
