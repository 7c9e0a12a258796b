#!/usr/bin/env bash
# Set up scanner on a Debian 12 machine and either start the filter or run the tests.
#
#   scripts/quickstart.sh serve [scanner serve options]   set up, then run the filter
#   scripts/quickstart.sh test  [pytest options]          set up, then run the test suite
#
# Debian packages are installed with apt-get when missing and we are root; Python
# dependencies go into .venv beside this script's repository.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
mode="${1:-}"
shift || true

runtime_pkgs=(python3 python3-venv libmagic1 libarchive13 clamav-daemon)
test_pkgs=(postfix clamav-daemon clamav clamav-testfiles swaks arj dosfstools mtools fdisk postgresql nsd opendkim-tools spamassassin libmilter1.0.1
           dovecot-sieve slapd logwatch libmime-tools-perl mariadb-server)

need_pkgs() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "quickstart: missing Debian packages: ${missing[*]} (run as root to install them)" >&2
        return 0
    fi
    echo "quickstart: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# The venv's interpreter: $PYTHON if set, else Debian's /usr/bin/python3 (the package
# installed above: built with PGO and LTO and linked statically, it ran the filter with
# 6-8 % less CPU than a default pyenv build; README, Performance), else python3 on the
# PATH. An existing .venv is kept as it is: remove it to change interpreter.
venv_python() {
    if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"
    elif [ -x /usr/bin/python3 ]; then echo /usr/bin/python3
    else echo python3
    fi
}

setup_venv() {
    local extra="$1"
    if [ ! -x .venv/bin/python ]; then
        "$(venv_python)" -m venv .venv
    fi
    .venv/bin/python -m pip install -q --upgrade pip >&2
    .venv/bin/python -m pip install -q -e ".${extra}" >&2
}

# Unpack one program of a Debian package into .cache/DIR/root without installing the
# package: unpack_deb PACKAGE DIR PATH-IN-PACKAGE; prints the program's path, or nothing.
unpack_deb() {
    local package="$1" dir="$here/.cache/$2" program="$3"
    if [ ! -x "$dir/root$program" ]; then
        mkdir -p "$dir"
        (cd "$dir" && { apt-get download "$package" >/dev/null 2>&1 \
            || { apt-get update -qq && apt-get download "$package" >/dev/null 2>&1; }; } \
            && dpkg-deb -x "${package}"_*.deb root) || true
    fi
    [ -x "$dir/root$program" ] && echo "$dir/root$program"
    return 0
}

# The stock amavisd-release client, for the AM.PDP compatibility test. Installing the
# amavisd-new package would also start amavisd on port 10024, so unpack the client only.
amavisd_release_client() {
    [ -x /usr/sbin/amavisd-release ] && return 0
    local found
    found=$(unpack_deb amavisd-new amavisd /usr/sbin/amavisd-release)
    if [ -n "$found" ]; then
        export AMAVISD_RELEASE="$found"
    fi
}

# amavisd-milter, for the before-queue tests (tests/test_postfix_milter.py). Its package
# depends on amavisd-new, whose installation starts amavisd on port 10024 (and fails
# without a fully qualified host name), so unpack the milter only; it needs libmilter.
amavisd_milter_binary() {
    if [ -x /usr/sbin/amavisd-milter ]; then
        export AMAVISD_MILTER=/usr/sbin/amavisd-milter
        return 0
    fi
    local found
    found=$(unpack_deb amavisd-milter amavisd-milter /usr/sbin/amavisd-milter)
    if [ -n "$found" ]; then
        export AMAVISD_MILTER="$found"
    else
        echo "quickstart: could not unpack amavisd-milter (its tests skip)" >&2
    fi
}

# The RFC 7208 SPF test suite (rfc7208-tests.yml, BSD licence) for
# tests/auth/test_spf_rfc7208.py. It ships in the pyspf source distribution; we keep
# only the suite and its licence in .cache/spf-suite (not in the repository). When the
# download fails, set-up goes on and those tests skip with the reason.
spf_suite() {
    local dir="$here/.cache/spf-suite" version="2.0.14"
    [ -f "$dir/rfc7208-tests.yml" ] && return 0
    mkdir -p "$dir"
    (cd "$dir" \
        && "$here/.venv/bin/python" -m pip download -q "pyspf==$version" --no-deps \
            --no-binary :all: -d . >/dev/null 2>&1 \
        && tar -xzf "pyspf-$version.tar.gz" --strip-components=2 \
            "pyspf-$version/test/rfc7208-tests.yml" \
            "pyspf-$version/test/rfc7208-tests.LICENSE") \
        || echo "quickstart: could not fetch the RFC 7208 SPF test suite (its tests skip)" >&2
}

case "$mode" in
    serve)
        need_pkgs "${runtime_pkgs[@]}"
        setup_venv ""
        exec .venv/bin/scanner serve "$@"
        ;;
    test)
        need_pkgs "${runtime_pkgs[@]}" "${test_pkgs[@]}"
        setup_venv "[test]"
        amavisd_release_client
        amavisd_milter_binary
        spf_suite
        # The machine's own Postfix, clamd, nsd and PostgreSQL (if apt started them) are
        # left alone: the tests start private instances on free loopback ports.
        .venv/bin/ruff check --quiet . || { echo "quickstart: ruff found problems" >&2; exit 1; }
        exec .venv/bin/python -m pytest "$@"
        ;;
    *)
        echo "usage: $0 serve|test [args...]" >&2
        exit 64
        ;;
esac
