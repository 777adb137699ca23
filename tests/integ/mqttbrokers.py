"""mqttbrokers: the MQTT brokers komd's tests run as child processes (mqttpeers imports
them; see its docstring): mosquitto 2.0 and ActiveMQ 5.17, on a free loopback port each,
with a store of their own that survives SIGKILL, one interface (_BrokerProc)."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from komdtest import WAIT, check, free_port


def accepts(port, host="127.0.0.1"):
    """A TCP connect to host:port succeeds now."""
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False


class _BrokerProc:
    """A broker as a child process on 127.0.0.1:port (free when not given), with a directory
    of its own: start() (again: a restart on the same port with the same store) polls until
    the port accepts; its output lines in .lines as they come; kill() is SIGKILL."""

    name = "broker"

    def __init__(self, port, prefix):
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix=prefix)
        self.lines = []
        self.proc = None
        self.starts = 0

    def _spawn(self, argv, timeout, cwd=None):
        check(self.proc is None or self.proc.poll() is not None, "%s already running" % self.name)
        self.starts += 1
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     text=True, errors="replace", bufsize=1, cwd=cwd)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        t0 = time.monotonic()
        WAIT.until(lambda: self.proc.poll() is not None or accepts(self.port), timeout,
                   "%s accepting on %d" % (self.name, self.port))
        self.start_s = time.monotonic() - t0
        check(self.proc.poll() is None, "%s exited at start:\n%s" % (self.name, self.log()))
        return self

    def _read(self, proc):
        for line in proc.stdout:
            self.lines.append(line.rstrip("\n"))
            WAIT.kick()
        WAIT.kick()

    def log(self):
        return "\n".join(self.lines)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL: no clean exit, so only what the store already holds survives."""
        if self.running():
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout=10):
        if self.running():
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        if exc[0] is not None:
            print("---- %s %d log (last 60 lines) ----\n%s" % (self.name, self.port, "\n".join(self.lines[-60:])))
        shutil.rmtree(self.dir, ignore_errors=True)


class Mosquitto(_BrokerProc):
    """mosquitto on 127.0.0.1:port (free when not given) with a store in its own directory.

    tls: None, {"cafile", "certfile", "keyfile", "require_certificate": bool} (paths), or
    {"psk": {identity: hexkey}, "psk_hint": "..."}."""

    name = "mosquitto"

    def __init__(self, port=None, persist=True, max_packet_size=None, max_inflight=None, max_keepalive=None,
                 tls=None, extra=""):
        super().__init__(port, "mosq-")
        self.store = os.path.join(self.dir, "store") + "/"
        os.makedirs(self.store)
        self.conf = os.path.join(self.dir, "mosquitto.conf")
        c = ["listener %d 127.0.0.1" % self.port, "allow_anonymous true", "max_queued_messages 0",
             # run as root, mosquitto would become user mosquitto and skip a store it cannot write
             "user %s" % ("root" if os.getuid() == 0 else os.environ.get("USER", "nobody")),
             "log_dest stdout", "log_type all", "connection_messages true", "log_timestamp_format %H:%M:%S"]
        if persist:
            # without these, acknowledged messages are gone after SIGKILL (mosquitto 2.0.11
            # saves its store only every autosave_interval or at a clean exit)
            c += ["persistence true", "persistence_location %s" % self.store, "autosave_interval 1",
                  "autosave_on_changes true"]
        if max_packet_size:
            c.append("max_packet_size %d" % max_packet_size)
        if max_inflight is not None:
            c.append("max_inflight_messages %d" % max_inflight)
        if max_keepalive is not None:
            c.append("max_keepalive %d" % max_keepalive)
        if tls and "psk" in tls:
            pskfile = os.path.join(self.dir, "psk")
            with open(pskfile, "w") as f:
                for ident, key in tls["psk"].items():
                    f.write("%s:%s\n" % (ident, key))
            c += ["psk_hint %s" % tls.get("psk_hint", "komd-test"), "psk_file %s" % pskfile, "use_identity_as_username true"]
        elif tls:
            c += ["cafile %s" % tls["cafile"], "certfile %s" % tls["certfile"], "keyfile %s" % tls["keyfile"],
                  "require_certificate %s" % ("true" if tls.get("require_certificate") else "false")]
        if extra:
            c.append(extra)
        with open(self.conf, "w") as f:
            f.write("\n".join(c) + "\n")

    def start(self, timeout=10):
        """Start (or restart, same port and store) and wait until the port accepts."""
        # stdbuf: its log lines as they happen (a pipe would hold them until exit; after
        # SIGKILL they would be gone)
        return self._spawn(["stdbuf", "-oL", "mosquitto", "-c", self.conf], timeout)

    def wait_saved(self, timeout=5):
        """Make sure the store holds the state so far (the subscriptions of persistent
        sessions), so that a SIGKILL keeps it. mosquitto 2.0.11 with autosave_on_changes
        writes its store one change late: the save logged right after a SUBACK does not
        hold that subscription (seen here: it is gone after SIGKILL, kept after SIGTERM).
        So: one more change (a retained message on a topic nobody reads), then its save."""
        from mqttpeers import pub  # the mosquitto_pub client lives there
        n = len(self.lines)
        pub(self.port, "mqttpeers/nudge", str(n), qos=1, retain=True)
        WAIT.until(lambda: any("Saving in-memory database" in l for l in self.lines[n:]), timeout,
                   "mosquitto's store written")

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def clients(self, since=0):
        """Client ids in 'New client connected' lines (since the given log line)."""
        out = []
        for l in self.lines[since:]:
            if "New client connected" in l and " as " in l:
                out.append(l.split(" as ", 1)[1].split(" ", 1)[0])
        return out


AMQ_HOME = "/usr/share/activemq"
# the MQTT transport of Debian's activemq needs these (packages libmqtt-client-java,
# libhawtdispatch-java), which the package does not put on its class path
AMQ_JARS = ["/usr/share/java/mqtt-client.jar", "/usr/share/java/hawtdispatch.jar",
            "/usr/share/java/hawtdispatch-transport.jar"]


class ActiveMQ(_BrokerProc):
    """ActiveMQ 5.17 (Debian's activemq) as a plain child process: only an MQTT transport on
    127.0.0.1:port (free when not given), no JMX, no web console, a KahaDB store in its own
    directory that syncs its journal on every write (journalDiskSyncStrategy always, the
    default made explicit). Same interface as Mosquitto: start() polls until the port
    accepts (about 2 s: a JVM), kill() is SIGKILL, start() again restarts on the same port
    with the same store."""

    # A subscriber with a persistent session need not SUBSCRIBE again after reconnecting:
    # ActiveMQ restores its subscriptions at CONNECT (though its CONNACK says Session Present
    # 0), and by its source a SUBSCRIBE to a topic the session has makes it dispatch again
    # (AbstractMQTTSubscriptionStrategy.onReSubscribe: recoverRetroactiveMessages,
    # dispatchPending), beyond the retained messages of MQTT 3.1.1 3.8.4.
    resubscribe = False

    name = "activemq"

    def __init__(self, port=None, heap_mb=256):
        super().__init__(port, "amq-")
        self.heap_mb = heap_mb
        with open(os.path.join(self.dir, "activemq.xml"), "w") as f:
            f.write("""<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans-2.0.xsd
  http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">
  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="komdtest" useJmx="false"
          persistent="true" advisorySupport="false" schedulerSupport="false" useShutdownHook="false"
          dataDirectory="%(d)s/data">
    <persistenceAdapter><kahaDB directory="%(d)s/kahadb" journalDiskSyncStrategy="always"/></persistenceAdapter>
    <transportConnectors>
      <transportConnector name="mqtt" uri="mqtt://127.0.0.1:%(port)d"/>
    </transportConnectors>
  </broker>
</beans>
""" % {"d": self.dir, "port": self.port})
        with open(os.path.join(self.dir, "log4j.properties"), "w") as f:
            f.write("log4j.rootLogger=INFO, out\nlog4j.appender.out=org.apache.log4j.ConsoleAppender\n"
                    "log4j.appender.out.layout=org.apache.log4j.PatternLayout\n"
                    "log4j.appender.out.layout.ConversionPattern=%d{HH:mm:ss,SSS} %-5p %m%n\n")

    def start(self, timeout=30):
        """Start (or restart, same port and store) and wait until the port accepts."""
        missing = [j for j in [os.path.join(AMQ_HOME, "bin", "activemq.jar")] + AMQ_JARS if not os.path.exists(j)]
        check(not missing, "activemq: %s missing: run make (its deps step installs activemq, "
              "libmqtt-client-java)" % missing)
        argv = ["java", "-Xms64m", "-Xmx%dm" % self.heap_mb, "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                "-Dactivemq.classpath=%s" % ":".join([self.dir] + AMQ_JARS),
                "-Dactivemq.home=%s" % AMQ_HOME, "-Dactivemq.base=%s" % self.dir,
                "-Dactivemq.conf=%s" % self.dir, "-Dactivemq.data=%s" % os.path.join(self.dir, "data"),
                "-jar", os.path.join(AMQ_HOME, "bin", "activemq.jar"),
                "start", "xbean:file:%s" % os.path.join(self.dir, "activemq.xml")]
        return self._spawn(argv, timeout, cwd=self.dir)

    def wait_saved(self, timeout=5):
        """Nothing to wait for: ActiveMQ stores a durable subscription (an MQTT subscription
        with clean session false and QoS 1 or 2) while it handles the SUBSCRIBE, before its
        SUBACK."""

    def stop(self, timeout=15):
        super().stop(timeout)
