"""The docs match the program: every komd option and every komctl command or option that
README, the man pages and the demo configuration name exists (komd -h, komctl -h list it,
and the program accepts it). The configuration keys are checked both ways by the unit test
test_conf (test_manpage, test_manpage_keys_exist); the configurations in README and conf/
by test_misc."""
import os
import re
import subprocess

from komdtest import BUILD, TOP, check, main

KOMD = os.path.join(BUILD, "komd")
KOMCTL = os.path.join(BUILD, "komctl")
DOCS = ("README.md", "man/komd.8", "man/komd.conf.5", "man/komctl.1", "conf/komd.conf", "conf/komd.conf.skel")


def doc_text(path):
    """The text where commands are written as commands: README's code (indented blocks and
    `spans`), the man pages' bold words (.B/.BR lines, \\fB...\\fR), the demo's comments;
    roff escapes undone."""
    text = open(os.path.join(TOP, path)).read()
    if path.endswith(".md"):
        spans = re.findall(r"`([^`\n]+)`", text) + [l[4:] for l in text.splitlines() if l.startswith("    ")]
    elif path.startswith("man/"):
        spans = [re.sub(r'^\.[BI]R? ', "", l).replace('"', "") for l in text.splitlines() if re.match(r"\.[BI]R? ", l)]
        spans += re.findall(r"\\fB(.*?)\\f[RP]", text)
        spans += [l for l in text.splitlines() if not l.startswith(".")]  # examples (.nf blocks)
    else:
        spans = [l.lstrip("# ") for l in text.splitlines() if l.startswith("#")]
    return [s.replace("\\-", "-").replace("\\e", "\\") for s in spans]


def named(word):
    """(doc, the rest of the command line) for each place that names command `word`."""
    out = []
    for path in DOCS:
        for span in doc_text(path):
            for m in re.finditer(r"(?:^|[\s/(])%s((?:\s+-{1,2}[A-Za-z][\w-]*(?:\s+[A-Z\w./-]+)?)*)(?:\s+([a-z]+))?" % word,
                                 span):
                out.append((path, m.group(1).split(), m.group(2)))
    return out


def test_komd_options_exist():
    usage = subprocess.run([KOMD, "-h"], capture_output=True, text=True).stdout
    seen = set()
    for path, opts, _ in named("komd"):
        for o in opts:
            if o.startswith("-"):
                seen.add(o)
                check(re.search(r"(^|[\s\[|])%s\b" % re.escape(o), usage), "%s names komd %s, which komd -h does not list"
                      % (path, o))
    # and komd takes each (with -t on the demo, or alone for those that exit at once)
    for o in sorted(seen):
        args = [KOMD, o] + (["-c", os.path.join(TOP, "conf", "komd.conf"), "-t"] if o not in ("-h", "-V", "-t", "-c") else [])
        if o in ("-t", "-c"):
            args = [KOMD, "-c", os.path.join(TOP, "conf", "komd.conf"), "-t"]
        r = subprocess.run(args, capture_output=True, text=True)
        check(r.returncode == 0, "komd %s is accepted: %s" % (o, r.stderr))
    check({"-t", "-f", "-c"} <= seen, "the docs name komd's main options: %s" % sorted(seen))


def test_komctl_commands_exist():
    usage = subprocess.run([KOMCTL, "-h"], capture_output=True, text=True)
    text = usage.stdout + usage.stderr
    commands = set(re.findall(r"^  ([a-z]+)", text, re.M))
    check({"status", "tags", "get", "set", "trace", "certs", "reload"} <= commands, "komctl -h: %s" % text)
    prose = {"client", "clients", "user", "users", "with", "and", "or", "to", "is", "can", "may", "as", "in", "the",
             "gives", "shows", "says", "run", "also", "only", "answers", "reports", "still", "then", "waits", "which"}
    seen = set()
    for path, opts, cmd in named("komctl"):
        for o in (o for o in opts if o.startswith("-")):
            check(re.search(r"(^|[\s\[|])%s\b" % re.escape(o), text), "%s names komctl %s, not in komctl -h" % (path, o))
        if cmd and cmd not in prose:
            seen.add(cmd)
            check(cmd in commands, "%s names 'komctl %s', which komctl does not have" % (path, cmd))
    check(len(seen) >= 5, "the docs name komctl's commands: %s" % sorted(seen))


if __name__ == "__main__":
    main([test_komd_options_exist, test_komctl_commands_exist])
