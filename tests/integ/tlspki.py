"""Test certificates, made with the openssl tool at test time (never committed): a CA, a
second (untrusted) CA, server and client certificates, an expired one, an encrypted key."""
import os
import re
import subprocess
import tempfile
import threading

from komdtest import WAIT


def run(*args, cwd):
    r = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(args), r.stderr))
    return r.stdout


def ca(d, name):
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-days", "3650", "-keyout", name + ".key", "-out", name + ".pem", "-subj", "/CN=%s" % name, cwd=d)


def cert(d, name, issuer, san="DNS:localhost,IP:127.0.0.1,IP:::1", days="825", client=False):
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=%s" % name, cwd=d)
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=%s\nextendedKeyUsage=%s\n" % (san, "clientAuth" if client else "serverAuth"))
    run("openssl", "x509", "-req", "-in", name + ".csr", "-CA", issuer + ".pem", "-CAkey", issuer + ".key",
        "-CAcreateserial", "-days", days, "-out", name + ".pem", "-extfile", ext, cwd=d)


def server_pki(prefix):
    """A new temporary directory with a CA (ca.pem, ca.key) and a server certificate it
    signed (srv.pem, srv.key); its path."""
    d = tempfile.mkdtemp(prefix=prefix)
    ca(d, "ca")
    cert(d, "srv", "ca")
    return d


def expired(d, name, issuer):
    """A certificate valid from 2020 to 2021 (openssl ca can set both dates)."""
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=%s" % name, cwd=d)
    os.makedirs(os.path.join(d, "ca-db"), exist_ok=True)
    open(os.path.join(d, "ca-db", "index.txt"), "w").close()
    with open(os.path.join(d, "ca-db", "serial"), "w") as f:
        f.write("1000\n")
    with open(os.path.join(d, "ca.cnf"), "w") as f:
        f.write("""[ca]
default_ca = test
[test]
dir = %s/ca-db
database = $dir/index.txt
serial = $dir/serial
new_certs_dir = $dir
default_md = sha256
policy = any
copy_extensions = none
x509_extensions = ext
[any]
commonName = supplied
[ext]
subjectAltName = DNS:localhost,IP:127.0.0.1
""" % d)
    run("openssl", "ca", "-batch", "-config", "ca.cnf", "-cert", issuer + ".pem", "-keyfile", issuer + ".key",
        "-in", name + ".csr", "-out", name + ".pem", "-startdate", "20200101000000Z",
        "-enddate", "20210101000000Z", "-notext", cwd=d)


def revoke(d, name, issuer, crl):
    """Revoke certificate name and write issuer's CRL with every revocation so far to crl
    (the openssl ca database of expired() holds them)."""
    run("openssl", "ca", "-batch", "-config", "ca.cnf", "-cert", issuer + ".pem", "-keyfile", issuer + ".key",
        "-revoke", name + ".pem", cwd=d)
    run("openssl", "ca", "-batch", "-config", "ca.cnf", "-cert", issuer + ".pem", "-keyfile", issuer + ".key",
        "-gencrl", "-crldays", "30", "-out", crl, cwd=d)


def encrypt_key(d, name, password):
    run("openssl", "pkey", "-in", name + ".key", "-aes256", "-passout", "pass:" + password,
        "-out", name + ".enc.key", cwd=d)


def make(d):
    """Everything the TLS tests use, in directory d."""
    ca(d, "ca")
    ca(d, "otherca")
    cert(d, "server", "ca")
    cert(d, "server2", "ca")
    cert(d, "client", "ca", san="DNS:client", client=True)
    cert(d, "rogue", "otherca")
    cert(d, "wrongname", "ca", san="DNS:elsewhere.example")
    expired(d, "old", "ca")
    cert(d, "soon", "ca", days="10")
    encrypt_key(d, "server", "s3cret")
    encrypt_key(d, "client", "s3cret")
    # revocation: crl1 revokes "revoked" (a client) and "srvrevoked" (a server), crl2 also "client2"
    cert(d, "revoked", "ca", san="DNS:client", client=True)
    cert(d, "client2", "ca", san="DNS:client", client=True)
    cert(d, "srvrevoked", "ca")
    revoke(d, "revoked", "ca", "crl0.pem")
    revoke(d, "srvrevoked", "ca", "crl1.pem")
    revoke(d, "client2", "ca", "crl2.pem")
    return d


class OpenSSL:
    """openssl s_server or s_client as a peer; its output is collected line by line."""

    def __init__(self, *args):
        self.lines = []
        # line-buffered, so that output arrives as it happens and lines do not interleave
        self.proc = subprocess.Popen(["stdbuf", "-oL", "-eL", "openssl"] + list(args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            WAIT.kick()
        WAIT.kick()

    def text(self):
        return "\n".join(self.lines)

    def wait(self, regex, timeout=10):
        rx = re.compile(regex)
        return WAIT.until(lambda: next((m for m in map(rx.search, self.lines) if m), None), timeout,
                          "openssl output /%s/:\n%s" % (regex, self.text()))

    def send(self, text):
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def s_server(port, *args):
    srv = OpenSSL("s_server", "-accept", "127.0.0.1:%d" % port, *args)
    srv.wait(r"^ACCEPT")
    return srv
