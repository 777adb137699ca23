"""IEC 60870-5-104: values a type cannot carry (issue 10 item 4), against a peer whose APDUs
scapy builds and dissects (iec104peer.py).

- test_served_values_out_of_range: every monitor type komd serves, with a value beyond its
  range, NaN or an infinity: clamped with OV where the type has a quality descriptor with
  OV (QDS), CY for integrated totals, IV where the type has neither (SIQ, DIQ, SEP, QDP);
  NaN and infinities invalid (IV); M_ME_ND_1 (no quality descriptor) clamped, logged and
  counted. The same in spontaneous transmission, interrogation and read.
- test_received_commands_out_of_range: set-points and commands komd's server receives that
  the type or the tag cannot take (NaN and infinite floats, a float beyond an int tag, 5 for
  a bool tag, DCS/RCS 0 and 3 "not permitted") get a negative confirmation; nothing is
  written.
- test_client_commands_out_of_range: komd's client refuses to send a command whose value its
  type cannot carry (40000 as C_SE_NB_1, 1e40 or NaN as C_SE_NC_1, 1.5 as C_SE_NA_1, a
  double command 0 or 3, 2^33 as C_BO_NA_1), instead of sending a clamped value.
- test_client_received_values: a NaN or infinite float from the station makes the tag
  invalid; a float beyond an int tag is saturated and flagged OV.
"""
import math
import struct
import subprocess
import threading

from komdtest import KOMCTL, Komd, check, free_port, main
from iec104peer import COT_ACT, COT_ACTCON, COT_ACTTERM, COT_INROGEN, COT_SPONT, C_IC_NA_1, C_SE_NC_1, Peer, \
    PeerServer, io

COT_REQ = 5
C_RD_NA_1 = 102
FLT_MAX = struct.unpack("<f", bytes.fromhex("ffff7f7f"))[0]

# (tag, komd type, iec_type, IOA)
SERVED = [("v.sva", "int", "M_ME_NB_1", 1), ("v.svat", "int", "M_ME_TE_1", 2), ("v.r32", "float", "M_ME_NC_1", 3),
          ("v.r32t", "float", "M_ME_TF_1", 4), ("v.nva", "float", "M_ME_NA_1", 5), ("v.nd", "float", "M_ME_ND_1", 6),
          ("v.st", "int", "M_ST_NA_1", 7), ("v.it", "int", "M_IT_NA_1", 8), ("v.itt", "int", "M_IT_TB_1", 9),
          ("v.dp", "int", "M_DP_NA_1", 10), ("v.sp", "int", "M_SP_NA_1", 11), ("v.bo", "int", "M_BO_NA_1", 12),
          ("v.ps", "int", "M_PS_NA_1", 13), ("v.ep", "int", "M_EP_TD_1", 14), ("v.fsva", "float", "M_ME_NB_1", 15),
          ("v.fit", "float", "M_IT_NA_1", 16), ("v.spe", "int", "M_EP_TE_1", 17), ("v.oci", "int", "M_EP_TF_1", 18)]
# commands the server takes: (tag, komd type, iec_type, IOA)
COMMANDS = [("w.f", "float", "C_SE_NC_1", 200), ("w.i", "int", "C_SE_NC_1", 201), ("w.b", "bool", "C_SE_NB_1", 202),
            ("w.dc", "dpi", "C_DC_NA_1", 203), ("w.rc", "int", "C_RC_NA_1", 204), ("w.bo", "bool", "C_BO_NA_1", 205),
            ("w.nva", "int", "C_SE_NA_1", 206), ("w.sb", "int", "C_SE_NB_1", 207)]


# float tags a device gives komd's client line (NaN and infinities cannot be set with komctl):
# (tag, IOA at the device, iec_type served, IOA served)
FROM_DEVICE = [("x.r32", 1, "M_ME_NC_1", 30), ("x.nva", 2, "M_ME_NA_1", 31), ("x.fsva", 3, "M_ME_NB_1", 32),
               ("x.fit", 4, "M_IT_NA_1", 33), ("x.nd", 5, "M_ME_ND_1", 34), ("x.sp", 6, "M_ST_NA_1", 35)]


def server_conf(port, dev_port=None):
    tags = ", ".join('{ name = "%s"; type = "%s"; }' % (n, t) for n, t, _, _ in SERVED + COMMANDS)
    served = ",\n    ".join('{ name = "%s"; address = "%d"; iec_type = "%s"; }' % (n, a, it) for n, _, it, a in SERVED)
    cmds = ",\n    ".join('{ name = "%s"; address = "%d"; iec_type = "%s"; direction = "inout"; }' % (n, a, it)
                          for n, _, it, a in COMMANDS)
    dev = ""
    if dev_port:
        served += "".join(',\n    { name = "%s"; address = "%d"; iec_type = "%s"; }' % (n, a, it)
                          for n, _, it, a in FROM_DEVICE)
        dev = """, { name = "dev"; protocol = "iec104-client"; host = "127.0.0.1"; port = %d;
  connect_timeout = 1; reconnect_delay = 0.2; reconnect_max = 0.5;
  stations = ( { name = "d1"; address = 1; tags = ( %s ); } ); }""" % (dev_port, ", ".join(
            '{ name = "%s"; address = "%d"; type = "float"; iec_type = "M_ME_NC_1"; }' % (n, a)
            for n, a, _, _ in FROM_DEVICE))
    return """tags = ( %s );
lines = ( { name = "srv"; protocol = "iec104-server"; host = "127.0.0.1"; port = %d; end_of_init = false;
  stations = ( { name = "ca1"; address = 1; cmdc = 1; tags = (
    %s,
    %s ); } ); }%s );""" % (tags, port, served, cmds, dev)


def quality(o):
    q = {}
    for f in ("iv", "nt", "sb", "bl", "ov", "ca", "cy"):
        if hasattr(o, f):
            q[f] = getattr(o, f)
    return q


def value(type_name, o):
    if type_name in ("M_ME_NB_1", "M_ME_TE_1", "M_ME_NC_1", "M_ME_TF_1"):
        return o.scaled_value
    if type_name in ("M_ME_NA_1", "M_ME_ND_1"):
        return o.normed_value
    if type_name == "M_ST_NA_1":
        return o.value
    if type_name in ("M_IT_NA_1", "M_IT_TB_1"):
        return o.counter_value
    if type_name == "M_DP_NA_1":
        return o.dpi_value
    if type_name == "M_SP_NA_1":
        return o.spi_value
    if type_name in ("M_BO_NA_1",):
        return o.bsi
    if type_name == "M_EP_TD_1":
        return o.es
    return None


NVA_MAX = 32767 / 32768.0
# (tag, value set, value expected, quality bits expected (others 0))
CASES = [
    ("v.sva", "40000", 32767, {"ov": 1}), ("v.sva", "-40000", -32768, {"ov": 1}), ("v.sva", "-32768", -32768, {}),
    ("v.svat", "32768", 32767, {"ov": 1}),
    ("v.r32", "1e40", FLT_MAX, {"ov": 1}), ("v.r32", "-1e40", -FLT_MAX, {"ov": 1}), ("v.r32", "3.5", 3.5, {}),
    ("v.r32t", "1e39", FLT_MAX, {"ov": 1}),
    ("v.nva", "2", NVA_MAX, {"ov": 1}), ("v.nva", "-1.5", -1.0, {"ov": 1}),
    ("v.nva", "1", NVA_MAX, {"ov": 1}), ("v.nva", "0.5", 0.5, {}),
    ("v.nd", "2", NVA_MAX, {}), ("v.nd", "-3", -1.0, {}),
    ("v.st", "100", 63, {"ov": 1}), ("v.st", "-65", -64, {"ov": 1}), ("v.st", "-64", -64, {}),
    ("v.it", "%d" % 2 ** 40, 2 ** 31 - 1, {"cy": 1}), ("v.it", "%d" % -2 ** 40, -2 ** 31, {"cy": 1}),
    ("v.itt", "%d" % 2 ** 31, 2 ** 31 - 1, {"cy": 1}), ("v.it", "12", 12, {}),
    ("v.dp", "5", 3, {"iv": 1}), ("v.dp", "-1", 0, {"iv": 1}), ("v.dp", "2", 2, {}),
    ("v.sp", "2", 1, {"iv": 1}), ("v.sp", "-1", 0, {"iv": 1}), ("v.sp", "1", 1, {}),
    ("v.bo", "%d" % 2 ** 33, 0xFFFFFFFF, {"ov": 1}), ("v.bo", "-1", 0, {"ov": 1}), ("v.bo", "%d" % (2 ** 32 - 1), 0xFFFFFFFF, {}),
    ("v.ep", "4", 3, {"iv": 1}), ("v.ep", "1", 1, {}),
    ("v.fsva", "1e30", 32767, {"ov": 1}), ("v.fsva", "-2.5", -3, {}), ("v.fit", "1e20", 2 ** 31 - 1, {"cy": 1}),
    ("v.ps", "%d" % 2 ** 33, None, {"ov": 1}), ("v.ps", "7", None, {}),
    ("v.spe", "64", None, {"iv": 1}), ("v.spe", "63", None, {}), ("v.oci", "16", None, {"iv": 1}),
]


def check_obj(type_name, o, want_v, want_q, what):
    q = quality(o)
    bad = {k: v for k, v in q.items() if v != want_q.get(k, 0)}
    check(not bad, "%s: quality %s, expected %s" % (what, q, want_q))
    if want_v is not None:
        v = value(type_name, o)
        ok = v == want_v if not isinstance(want_v, float) else abs(v - want_v) <= abs(want_v) * 1e-6
        check(ok, "%s: value %r, expected %r" % (what, v, want_v))
    elif type_name in ("M_ME_NC_1", "M_ME_TF_1"):
        check(math.isfinite(value(type_name, o)), "%s: invalid, but a finite value: %r" % (what, value(type_name, o)))


def test_served_values_out_of_range():
    port = free_port()
    dev = PeerServer(name="device")
    with Komd(server_conf(port, dev.port)).start() as k:
        k.wait_log(r"line srv: listening")
        d = dev.wait_conn(1)
        d.wait_i(C_IC_NA_1, COT_ACT)
        p = Peer.connect(port, name="master")
        p.startdt()
        types = {n: it for n, _, it, _ in SERVED + FROM_DEVICE}
        ioas = {n: a for n, _, _, a in SERVED + FROM_DEVICE}
        dev_ioa = {n: a for n, a, _, _ in FROM_DEVICE}
        cases = CASES + [(tag, x, None, q) for tag in ("x.r32", "x.nva", "x.fsva", "x.fit")
                         for x, q in ((float("nan"), {"iv": 1}), (float("inf"), {"iv": 1}), (2.5, None),
                                      (float("-inf"), {"iv": 1}))]
        cases += [("x.nd", float("nan"), 0.0, {}), ("x.nd", 0.25, 0.25, {}), ("x.sp", float("inf"), 63, {"iv": 1})]
        for tag, v, want_v, want_q in cases:
            it, ioa = types[tag], ioas[tag]
            what = "%s (%s) = %s" % (tag, it, v)
            # spontaneous
            m = p.mark()
            if isinstance(v, str):
                k.ctl("set", tag, v)
            else:
                d.send_i([io(13, dev_ioa[tag], scaled_value=v)], COT_SPONT)
            f = p.wait(lambda f: f.fmt == "I" and f.cot == COT_SPONT and f.obj(ioa), 5, what, m)
            if want_q is None:  # 2.5 from the device: in range, good
                want_q = {"ov": 1} if it == "M_ME_NA_1" else {}
            check_obj(it, f.obj(ioa), want_v, want_q, what + ", spontaneous")
            # read
            m = p.mark()
            p.send_i([io(C_RD_NA_1, ioa)], COT_REQ)
            f = p.wait(lambda f: f.fmt == "I" and f.cot == COT_REQ and f.obj(ioa), 5, what + " read", m)
            check_obj(it, f.obj(ioa), want_v, want_q, what + ", read")
        # interrogation: the last values
        m = p.mark()
        p.send_i([io(C_IC_NA_1, 0, qoi=20)], COT_ACT)
        p.wait_i(C_IC_NA_1, COT_ACTTERM, since=m)
        seen = {}
        for f in p.iframes(m):
            if f.cot == COT_INROGEN:
                for o in f.objs:
                    seen[o.information_object_address] = o
        check(quality(seen[ioas["x.fsva"]]).get("iv") == 1 and quality(seen[ioas["v.nva"]]).get("ov") == 0 and
              quality(seen[ioas["v.bo"]]).get("ov") == 0 and quality(seen[ioas["v.svat"]]).get("ov") == 1,
              "the interrogation carries the same qualities: %r %r %r %r" % (
                  seen[ioas["x.fsva"]], seen[ioas["v.nva"]], seen[ioas["v.bo"]], seen[ioas["v.svat"]]))
        # M_ME_ND_1 has no quality descriptor: the clamping is logged and counted
        k.wait_log(r"line srv: station ca1: tag v\.nd: value out of the range of M_ME_ND_1, which has no quality "
                   r"descriptor: sent clamped")
        st = k.line("srv")["stations"][0]
        check(st["errors"] >= 4, "clamped M_ME_ND_1 values counted: %s" % st)
        p.check_clean()
        p.close()
    dev.close()


def test_received_commands_out_of_range():
    port = free_port()
    with Komd(server_conf(port)).start() as k:
        k.wait_log(r"line srv: listening")
        p = Peer.connect(port, name="master")
        p.startdt()
        refused = [
            ("NaN set-point", io(C_SE_NC_1, 200, scaled_value=float("nan")), "w.f"),
            ("+inf set-point", io(C_SE_NC_1, 200, scaled_value=float("inf")), "w.f"),
            ("-inf set-point", io(C_SE_NC_1, 200, scaled_value=float("-inf")), "w.f"),
            ("1e30 for an int tag", io(C_SE_NC_1, 201, scaled_value=1e30), "w.i"),
            ("5 for a bool tag", io(49, 202, scaled_value=5), "w.b"),
            ("DCS 0 (not permitted)", io(46, 203, dcs=0), "w.dc"),
            ("DCS 3 (not permitted)", io(46, 203, dcs=3), "w.dc"),
            ("RCS 0 (not permitted)", io(47, 204, rcs=0), "w.rc"),
            ("RCS 3 (not permitted)", io(47, 204, rcs=3), "w.rc"),
            ("bitstring 2 for a bool tag", io(51, 205, bsi=0x02000000), "w.bo"),  # scapy: octet 1 first
        ]
        for what, obj, tag in refused:
            before = k.tag(tag)
            m = p.mark()
            raw = p.send_i([obj], COT_ACT)
            f = p.wait(lambda f: f.fmt == "I" and f.cot == COT_ACTCON, 5, what, m)
            check(f.pn == 1 and f.type == raw[6], "%s: negative ActCon: %r" % (what, f))
            check(k.tag(tag)["updates"] == before["updates"], "%s: nothing written: %s" % (what, k.tag(tag)))
        accepted = [("1.5 set-point", io(C_SE_NC_1, 200, scaled_value=1.5), "w.f", 1.5),
                    ("1e9 for an int tag", io(C_SE_NC_1, 201, scaled_value=1e9), "w.i", 1000000000),
                    ("1 for a bool tag", io(49, 202, scaled_value=1), "w.b", True),
                    ("DCS 2", io(46, 203, dcs=2), "w.dc", "on"), ("RCS 1", io(47, 204, rcs=1), "w.rc", 1),
                    ("bitstring 1 for a bool tag", io(51, 205, bsi=0x01000000), "w.bo", True),
                    ("normalised -1 for an int tag", io(48, 206, normed_value=-32768), "w.nva", -1),
                    ("scaled -32768", io(49, 207, scaled_value=-32768), "w.sb", -32768)]
        for what, obj, tag, want in accepted:
            m = p.mark()
            p.send_i([obj], COT_ACT)
            f = p.wait(lambda f: f.fmt == "I" and f.cot == COT_ACTCON, 5, what, m)
            check(f.pn == 0 and k.tag(tag)["value"] == want, "%s: positive, written: %r %s" % (what, f, k.tag(tag)))
        p.check_clean()
        p.close()


def client_conf(port):
    return """lines = ( { name = "cli"; protocol = "iec104-client"; host = "127.0.0.1"; port = %d;
  connect_timeout = 1; reconnect_delay = 0.2; reconnect_max = 0.5;
  stations = ( { name = "ca1"; address = 1; cmdc = 1; tags = (
    { name = "c.sb"; address = "200"; type = "int"; iec_type = "C_SE_NB_1"; direction = "out"; },
    { name = "c.sf"; address = "201"; type = "float"; iec_type = "C_SE_NC_1"; direction = "out"; },
    { name = "c.sn"; address = "202"; type = "float"; iec_type = "C_SE_NA_1"; direction = "out"; },
    { name = "c.dc"; address = "203"; type = "dpi"; iec_type = "C_DC_NA_1"; direction = "out"; },
    { name = "c.bo"; address = "204"; type = "int"; iec_type = "C_BO_NA_1"; direction = "out"; },
    { name = "c.sc"; address = "205"; type = "int"; iec_type = "C_SC_NA_1"; direction = "out"; },
    { name = "c.rc"; address = "206"; type = "int"; iec_type = "C_RC_NA_1"; direction = "out"; },
    { name = "c.f"; address = "100"; type = "float"; iec_type = "M_ME_NC_1"; },
    { name = "c.i"; address = "101"; type = "int"; iec_type = "M_ME_NC_1"; },
    { name = "c.nva"; address = "102"; type = "float"; iec_type = "M_ME_NA_1"; } ); } ); } );""" % port


def komctl_set(k, tag, v):
    return subprocess.run([KOMCTL, "-s", k.sock, "set", tag, v], capture_output=True, text=True, timeout=20)


def test_client_commands_out_of_range():
    srv = PeerServer(name="controlled station")
    try:
        with Komd(client_conf(srv.port)).start() as k:
            p = srv.wait_conn(1)
            p.wait_i(C_IC_NA_1, COT_ACT)
            for tag, v in (("c.sb", "40000"), ("c.sb", "-32769"), ("c.sf", "1e40"), ("c.sf", "nan"), ("c.sf", "-inf"),
                           ("c.sn", "1.5"), ("c.sn", "1"), ("c.sn", "-1.1"), ("c.dc", "0"), ("c.dc", "3"),
                           ("c.bo", "%d" % 2 ** 33), ("c.bo", "-1"), ("c.sc", "5"), ("c.rc", "0"), ("c.rc", "3")):
                m = p.mark()
                r = komctl_set(k, tag, v)
                # NaN and infinities are refused before they reach the protocol
                check(r.returncode == 1 and ("out of the range" in r.stderr or "not a finite number" in r.stderr),
                      "%s = %s refused: %s %s" % (tag, v, r.stdout, r.stderr))
                p.roundtrip()
                check(not p.iframes(m), "%s = %s: nothing sent: %r" % (tag, v, p.iframes(m)))
            # values in range go out as they are
            for tag, v, typ, field, want in (("c.sb", "-32768", 49, "scaled_value", -32768),
                                             ("c.sf", "3.25", 50, "scaled_value", 3.25),
                                             ("c.sn", "-1", 48, "normed_value", -1.0),
                                             ("c.bo", "%d" % (2 ** 32 - 1), 51, "bsi", 0xFFFFFFFF)):
                m = p.mark()
                r = []
                th = threading.Thread(target=lambda: r.append(komctl_set(k, tag, v)))
                th.start()
                f = p.wait_i(typ, COT_ACT, since=m)
                o = f.objs[0]
                check(getattr(o, field) == want, "%s = %s sent as %r" % (tag, v, o))
                p.send_i([o], COT_ACTCON)
                th.join(10)
                check(r and r[0].returncode == 0, "%s = %s confirmed: %s" % (tag, v, r))
            p.check_clean()
    finally:
        srv.close()


def test_client_received_values():
    srv = PeerServer(name="controlled station")
    try:
        with Komd(client_conf(srv.port)).start() as k:
            p = srv.wait_conn(1)
            p.wait_i(C_IC_NA_1, COT_ACT)
            for objs, tag, want_v, want_q in (
                    ([io(13, 100, scaled_value=2.5)], "c.f", 2.5, "good"),
                    ([io(13, 100, scaled_value=float("nan"))], "c.f", None, "IV"),
                    ([io(13, 100, scaled_value=float("inf"))], "c.f", None, "IV"),
                    ([io(13, 101, scaled_value=1e30)], "c.i", 2 ** 63 - 1, "OV"),
                    ([io(13, 101, scaled_value=-1e30)], "c.i", -2 ** 63, "OV"),
                    ([io(13, 101, scaled_value=12.0)], "c.i", 12, "good")):
                u = k.tag(tag)["updates"]
                p.send_i(objs, COT_SPONT)
                k.until(lambda: k.tag(tag)["updates"] > u, 5, "the value of %s" % tag)
                t = k.tag(tag)
                check(t["quality"] == want_q and (want_v is None or t["value"] == want_v),
                      "%s: %s, expected %s %s" % (tag, t, want_v, want_q))
            p.check_clean()
    finally:
        srv.close()


if __name__ == "__main__":
    main([test_served_values_out_of_range, test_received_commands_out_of_range, test_client_commands_out_of_range,
          test_client_received_values])
