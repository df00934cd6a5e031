#!/usr/bin/env bash
# Run the whole ringmail test suite on a fresh Debian machine: install the
# real peers the tests talk to (Python, curl, swaks, Postfix's smtp-sink and
# smtp-source, fail2ban's fail2ban-regex, dkimpy and opendkim-tools for DKIM,
# SPF, DMARC and ARC, Prometheus' promtool, HAProxy, Dovecot's LMTP server,
# systemd-analyze, NSD, Unbound and ldnsutils for DANE, rspamd, ClamAV and
# python3-milter for the milters, Debian's chromium for the pages),
# then `cargo test` every package in the workspace.
# Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v python3 >/dev/null || missing+=(python3)
command -v curl >/dev/null || missing+=(curl)
command -v swaks >/dev/null || missing+=(swaks)
# swaks only recommends its TLS modules; the STARTTLS tests need them.
perl -MNet::SSLeay -MIO::Socket::SSL -e1 2>/dev/null || missing+=(libnet-ssleay-perl libio-socket-ssl-perl)
command -v openssl >/dev/null || missing+=(openssl)
[ -x /usr/sbin/smtp-sink ] || missing+=(postfix)
command -v fail2ban-regex >/dev/null || missing+=(fail2ban)
# dkimpy (python3-dkim) verifies and signs; PyNaCl for its Ed25519, authres
# for its ARC sealing. Debian's /usr/bin/python3, whatever python3 is first
# on PATH. opendkim-testmsg verifies RSA signatures; unshare and mount
# (util-linux) give it a private resolv.conf.
/usr/bin/python3 -c 'import dkim, nacl, authres' 2>/dev/null || missing+=(python3-dkim python3-nacl python3-authres)
command -v opendkim-testmsg >/dev/null || missing+=(opendkim-tools)
command -v unshare >/dev/null || missing+=(util-linux)
# promtool checks the /metrics page and the alert rules (tuning/alerts.yml).
command -v promtool >/dev/null || missing+=(prometheus)
# systemd-analyze rates the shipped unit (tests/systemd.rs); the package's
# services do not start (policy-rc.d below).
command -v systemd-analyze >/dev/null || missing+=(systemd)
# HAProxy sends PROXY protocol headers (tests/proxy_protocol.rs).
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
# Dovecot's LMTP server takes mail ringmail hands it (tests/lmtp_dovecot.rs).
[ -x /usr/sbin/dovecot ] || missing+=(dovecot-core)
[ -x /usr/lib/dovecot/lmtp ] || missing+=(dovecot-lmtpd)
# DANE end to end (tests/dane.rs): a zone signed by ldns-signzone, served by
# NSD and validated by Unbound, both started by the test (not as services).
[ -x /usr/sbin/nsd ] || missing+=(nsd)
[ -x /usr/sbin/unbound ] || missing+=(unbound)
command -v ldns-signzone >/dev/null || missing+=(ldnsutils)
# Milters (tests/milter.rs): rspamd's proxy worker in milter mode, ClamAV's
# clamd and clamav-milter (signatures made by the test; freshclam is never
# run), and python3-milter (libmilter) for the scripted filter.
command -v rspamd >/dev/null || missing+=(rspamd)
[ -x /usr/sbin/clamd ] || missing+=(clamav clamav-daemon)
[ -x /usr/sbin/clamav-milter ] || missing+=(clamav-milter)
/usr/bin/python3 -c 'import Milter' 2>/dev/null || missing+=(python3-milter)
# Headless Chromium renders the loadgen HTML report (loadgen/tests/report.rs)
# and the web status page (tests/web_status.rs); fonts so text shows.
command -v chromium >/dev/null || missing+=(chromium)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "tests/run.sh: missing ${missing[*]}; install them with: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
    echo "tests/run.sh: installing ${missing[*]}" >&2
    # Postfix is only needed for its smtp-sink/smtp-source tools and the
    # benchmark; keep its installer from configuring a system mailer.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections 2>/dev/null || true
    # Only the tools are wanted: where systemd runs, keep the packages'
    # services (a Prometheus server on :9090, fail2ban, Postfix, NSD, Unbound) from being
    # started by the install (invoke-rc.d(8): 101 = action forbidden).
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Removed here too: the exec below would skip the EXIT trap.
    if [ "$(trap -p EXIT)" ]; then
        rm -f "$policy"
        trap - EXIT
    fi
fi

exec cargo test --workspace --locked --no-fail-fast "$@"
