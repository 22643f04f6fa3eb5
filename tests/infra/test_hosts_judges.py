"""infra.host.* parsers and judges: captured command output in, a Finding out (no host, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from releasegate.probes import hosts
from releasegate.probes.hosts import (
    CertFileReading,
    DiskUsage,
    Listener,
    ListenerTable,
    ProcessInfo,
    ProcessTable,
    ServicesObservation,
    ServiceState,
    SysctlReading,
    ToolAnswer,
)

HOST = "ssh://deploy@app1"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

# --------------------------------------------------------------------------- /proc/<pid>/limits and processes

# Captured from `cat /proc/self/limits` (Debian 12, kernel 6.1).
PROC_LIMITS = """\
Limit                     Soft Limit           Hard Limit           Units     
Max cpu time              unlimited            unlimited            seconds   
Max file size             unlimited            unlimited            bytes     
Max stack size            8388608              unlimited            bytes     
Max core file size        0                    unlimited            bytes     
Max processes             96365                96365                processes 
Max open files            1024                 1048576              files     
Max locked memory         8388608              8388608              bytes     
Max pending signals       96365                96365                signals   
Max msgqueue size         819200               819200               bytes     
Max nice priority         0                    0                    
Max realtime timeout      unlimited            unlimited            us        
"""


def test_proc_limits_are_read_with_unlimited_as_none() -> None:
    limits = hosts.parse_limits(PROC_LIMITS)

    assert limits["Max open files"] == (1024, 1048576)
    assert limits["Max cpu time"] == (None, None)
    assert limits["Max nice priority"] == (0, 0)  # no unit column


def _table(*blocks: tuple[int, str, str | None]) -> str:
    lines = []
    for pid, argv0, limits in blocks:
        lines += [f"@@ {pid}", argv0]
        if limits is not None:
            lines += ["@@limits", limits]
    return "\n".join(lines) + "\n"


def test_the_process_table_reads_every_block() -> None:
    text = _table((10, "/usr/sbin/nginx", PROC_LIMITS), (11, "nginx: worker process", PROC_LIMITS.replace("1024 ", "65536")))

    table = hosts.parse_process_table("nginx", text)

    assert [(p.pid, p.soft_nofile, p.limits_read) for p in table.processes] == [(10, 1024, True), (11, 65536, True)]
    assert not table.more


def test_a_process_that_exited_between_listing_and_reading_counts_as_unread() -> None:
    table = hosts.parse_process_table("api", _table((7, "api", "")))

    assert table.processes == (ProcessInfo(pid=7, argv0="api", soft_nofile=None, hard_nofile=None, limits_read=False),)


@pytest.mark.parametrize(
    ("name", "argv0", "matches"),
    [
        ("nginx", "nginx: master process /usr/sbin/nginx", True),  # short names: comm alone decides
        ("collab-sync-worker", "/opt/collab/bin/collab-sync-worker", True),  # cut to collab-sync-wor by the kernel
        ("collab-sync-worker", "collab-sync-worker --port 8080", True),
        ("collab-sync-worker", "/opt/collab/bin/collab-sync-worker-old", False),
    ],
)
def test_names_longer_than_the_kernel_keeps_need_argv0(name: str, argv0: str, matches: bool) -> None:
    assert hosts.matches_name(name, argv0) is matches


def test_the_process_script_compares_the_kernels_cut_name() -> None:
    script = hosts.process_script("collab-sync-worker", limits=True)

    assert "n=collab-sync-wor;" in script
    assert "/limits" in script


def _nofile(*softs: int | None, more: bool = False) -> ProcessTable:
    return ProcessTable(
        "api", tuple(ProcessInfo(pid=100 + i, soft_nofile=s, hard_nofile=None, limits_read=True) for i, s in enumerate(softs)), more
    )


def test_nofile_passes_when_every_process_meets_the_policy() -> None:
    finding = hosts.judge_nofile(HOST, _nofile(65536, None), min_nofile=65536)

    assert finding.outcome == "passed", finding.summary
    assert finding.observed == "lowest soft limit 65536"
    assert finding.evidence["processes"][1]["soft"] == "unlimited"


def test_nofile_fails_when_one_process_is_below() -> None:
    finding = hosts.judge_nofile(HOST, _nofile(65536, 1024), min_nofile=65536)

    assert finding.outcome == "failed"
    assert "1 of 2 'api' processes" in finding.summary and "pid 101: 1024" in finding.summary


def test_nofile_without_the_process_cannot_judge() -> None:
    finding = hosts.judge_nofile(HOST, ProcessTable("api", ()), min_nofile=65536)

    assert finding.outcome == "error"
    assert finding.summary.startswith(f"{HOST}: no process named 'api'")


# --------------------------------------------------------------------------- sysctl

SYSCTL_OUTPUT = """\
@@ net.core.somaxconn
4096
@@ net.ipv4.ip_local_port_range
32768	60999
@@missing net.ipv4.tcp_tw_recycle
@@ net.ipv4.tcp_rmem
4096	131072	6291456
"""
NAMES = ["net.core.somaxconn", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_tw_recycle", "net.ipv4.tcp_rmem"]


def test_sysctl_output_is_read_per_setting() -> None:
    readings = hosts.parse_sysctl(NAMES, SYSCTL_OUTPUT)

    assert readings["net.core.somaxconn"].raw == "4096"
    assert readings["net.ipv4.ip_local_port_range"].raw == "32768 60999"
    assert readings["net.ipv4.tcp_tw_recycle"] == SysctlReading("net.ipv4.tcp_tw_recycle", None, "no such setting on this host")


def test_a_range_is_measured_by_its_width() -> None:
    assert hosts.sysctl_measure("32768 60999") == (28232.0, "width of 32768-60999")
    assert hosts.sysctl_measure("4096") == (4096.0, "value")
    with pytest.raises(ValueError, match="neither a number nor a range"):
        hosts.sysctl_measure("4096 131072 6291456")


def test_a_missing_setting_is_an_error_for_that_setting_and_the_rest_is_still_judged() -> None:
    readings = hosts.parse_sysctl(NAMES, SYSCTL_OUTPUT)

    only_missing = hosts.judge_sysctl(HOST, readings, {"net.core.somaxconn": ">=4096", "net.ipv4.tcp_tw_recycle": "==0"})
    also_failing = hosts.judge_sysctl(HOST, readings, {"net.core.somaxconn": ">=8192", "net.ipv4.tcp_tw_recycle": "==0"})

    assert only_missing.outcome == "error"
    assert "net.ipv4.tcp_tw_recycle: no such setting" in only_missing.summary
    assert [row["outcome"] for row in only_missing.evidence["settings"]] == ["passed", "error"]
    assert also_failing.outcome == "failed"
    assert "net.core.somaxconn = 4096, policy >=8192" in also_failing.summary
    assert "also could not judge: net.ipv4.tcp_tw_recycle" in also_failing.summary


def test_the_port_range_is_judged_by_its_width() -> None:
    readings = hosts.parse_sysctl(NAMES, SYSCTL_OUTPUT)

    narrow = hosts.judge_sysctl(HOST, readings, {"net.ipv4.ip_local_port_range": ">=30000"})
    wide = hosts.judge_sysctl(HOST, readings, {"net.ipv4.ip_local_port_range": ">=28000"})

    assert narrow.outcome == "failed" and "28232 (width of 32768-60999)" in narrow.summary
    assert wide.outcome == "passed"


def test_a_value_that_is_no_number_is_an_error() -> None:
    finding = hosts.judge_sysctl(HOST, hosts.parse_sysctl(NAMES, SYSCTL_OUTPUT), {"net.ipv4.tcp_rmem": ">=4096"})

    assert finding.outcome == "error"


def test_the_sysctl_script_reads_proc_sys_with_either_separator() -> None:
    script = hosts.sysctl_script(["net.ipv4.ip_local_port_range", "net/ipv4/conf/eth0.100/rp_filter"])

    assert "/proc/sys/net/ipv4/ip_local_port_range" in script
    assert "/proc/sys/net/ipv4/conf/eth0.100/rp_filter" in script


# --------------------------------------------------------------------------- df

# Captured from `df -P -k -- /tmp` (Debian 12).
DF_OUTPUT = """\
Filesystem     1024-blocks     Used Available Capacity Mounted on
/dev/vda         264212084 25828068  80562844      25% /
"""


def test_df_is_read_with_usage_as_dfs_capacity() -> None:
    usage = hosts.parse_df("/tmp", DF_OUTPUT)

    assert (usage.mount, usage.filesystem, usage.used_kb, usage.available_kb) == ("/", "/dev/vda", 25828068, 80562844)
    assert usage.percent == pytest.approx(24.277, abs=0.001)  # df shows 25%: it rounds up


def test_a_mount_point_with_spaces_is_kept_whole() -> None:
    usage = hosts.parse_df(
        "/mnt/my data/x", "Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/sdb1 100 90 10 90% /mnt/my data\n"
    )

    assert usage.mount == "/mnt/my data"
    assert usage.percent == 90.0


def test_unexpected_df_output_is_a_problem_not_a_number() -> None:
    assert hosts.parse_df("/x", "df: /x: Stale file handle\n").problem is not None


def test_disk_fails_over_the_limit_and_on_a_missing_path() -> None:
    usages = [hosts.parse_df("/var/lib/app", DF_OUTPUT), DiskUsage("/var/log/app", missing=True)]

    finding = hosts.judge_disk(HOST, usages, max_percent=20)

    assert finding.outcome == "failed"
    assert "/ (holding /var/lib/app) is 24.3% used, limit 20%" in finding.summary
    assert "/var/log/app does not exist" in finding.summary


def test_disk_passes_below_the_limit_and_errors_when_unreadable() -> None:
    assert hosts.judge_disk(HOST, [hosts.parse_df("/var/lib/app", DF_OUTPUT)], max_percent=85).outcome == "passed"
    assert hosts.judge_disk(HOST, [DiskUsage("/nfs", problem="df failed: Stale file handle")], max_percent=85).outcome == "error"


# --------------------------------------------------------------------------- services


def test_systemctl_answers_are_read() -> None:
    assert hosts.parse_systemd_state("api", "active=active\nenabled=enabled\n") == ServiceState("api", active="active", enabled="enabled")


@pytest.mark.parametrize(
    ("active", "enabled", "outcome", "words"),
    [
        ("active", "enabled", "passed", "running and enabled"),
        ("active", "static", "passed", "running and enabled"),
        ("inactive", "enabled", "failed", "api is inactive, not running"),
        ("activating", "enabled", "failed", "api is activating"),
        ("active", "disabled", "failed", "api is disabled, not enabled"),
        ("inactive", "Failed to get unit file state for api.service: No such file or directory", "failed", "no such unit"),
    ],
)
def test_systemd_services_must_run_and_be_enabled(active: str, enabled: str, outcome: str, words: str) -> None:
    finding = hosts.judge_services(HOST, ServicesObservation("systemd", (ServiceState("api", active=active, enabled=enabled),)))

    assert finding.outcome == outcome
    assert words in finding.summary


def test_a_systemctl_that_cannot_answer_is_an_error() -> None:
    state = ServiceState("api", active="sh: 1: systemctl: not found", enabled="sh: 1: systemctl: not found")

    finding = hosts.judge_services(HOST, ServicesObservation("systemd", (state,)))

    assert finding.outcome == "error"
    assert "systemctl gave no state" in finding.summary


def test_without_a_service_manager_a_running_process_of_that_name_counts() -> None:
    running = hosts.judge_services(HOST, ServicesObservation("none", (ServiceState("api", pids=(41,)),)))
    stopped = hosts.judge_services(HOST, ServicesObservation("none", (ServiceState("api"),)))

    assert running.outcome == "passed"
    assert stopped.outcome == "failed" and "api: no process of that name is running" in stopped.summary


# --------------------------------------------------------------------------- listening sockets

# Captured from `ss -Htln` (iproute2 6.1) plus lines seen on other hosts (interface-bound, IPv6 link-local).
SS_OUTPUT = """\
LISTEN 0      4096   127.0.0.53%lo:53        0.0.0.0:*
LISTEN 0      128          0.0.0.0:22        0.0.0.0:*
LISTEN 0      128             [::]:22           [::]:*
LISTEN 0      511                *:443             *:*
LISTEN 0      244        10.0.3.15:5432      0.0.0.0:*
LISTEN 0      2048           [::1]:6379         [::]:*
LISTEN 0      128   [fe80::1]%eth0:9100         [::]:*
"""
# `ss -tln` of an iproute2 without -H: the header line comes first.
SS_WITH_HEADER = (
    "State  Recv-Q Send-Q Local Address:Port  Peer Address:PortProcess\nLISTEN 0      4096       127.0.0.1:55487      0.0.0.0:*\n"
)


def test_ss_output_is_read_with_brackets_and_interfaces_removed() -> None:
    table = hosts.parse_ss(SS_OUTPUT)

    assert [(s.address, s.port, s.kind) for s in table.listeners] == [
        ("127.0.0.53", 53, "loopback"),
        ("0.0.0.0", 22, "wildcard"),
        ("::", 22, "wildcard"),
        ("*", 443, "wildcard"),
        ("10.0.3.15", 5432, "private"),
        ("::1", 6379, "loopback"),
        ("fe80::1", 9100, "private"),
    ]
    assert table.unparsed == ()


def test_ss_header_line_is_skipped() -> None:
    assert hosts.parse_ss(SS_WITH_HEADER).listeners == (Listener("127.0.0.1", 55487),)


# Captured from /proc/net/tcp and /proc/net/tcp6: 0.0.0.0:2024, 127.0.0.1:8080, [::]:47701 and [::1]:6379
# listening, one connection established. The tcp6 lines are split here only to fit the line length.
_TCP6_TAIL = " 0A 00000000:00000000 00:00000000 00000000     0        0 2597059 1 0000000000000000 100 0 0 10 0"
PROC_NET_TCP = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    "   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 632 1 0000000000000000 100 0 0 10 0\n"
    "   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 633 1 0000000000000000 100 0 0 10 0\n"
    "   2: 0100007F:1F90 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 634 1 0000000000000000 20 4 30 10 -1\n"
    "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt"
    "   uid  timeout inode\n"
    "   0: 00000000000000000000000000000000:BA55 00000000000000000000000000000000:0000" + _TCP6_TAIL + "\n"
    "   1: 00000000000000000000000001000000:18EB 00000000000000000000000000000000:0000" + _TCP6_TAIL + "\n"
)


def test_proc_net_tcp_is_read_where_ss_is_missing() -> None:
    table = hosts.parse_listeners("@@proc\n" + PROC_NET_TCP)

    assert table.source == "proc"
    assert [(s.address, s.port) for s in table.listeners] == [("0.0.0.0", 2024), ("127.0.0.1", 8080), ("::", 47701), ("::1", 6379)]


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.31.0.1", "private"),
        ("172.32.0.1", "public"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "private"),
        ("fd12:3456::1", "private"),
        ("fe80::1", "private"),
        ("::ffff:10.0.0.5", "private"),
        ("100.64.0.1", "public"),  # carrier-grade NAT is shared, not private to the site
        ("203.0.113.7", "public"),
        ("2001:db8::1", "public"),
        ("0.0.0.0", "wildcard"),
        ("::", "wildcard"),
        ("*", "wildcard"),
        ("not-an-address", "public"),
    ],
)
def test_addresses_are_classified(address: str, kind: str) -> None:
    assert hosts.classify_address(address) == kind


def test_a_private_port_on_all_interfaces_fails() -> None:
    table = hosts.parse_ss(SS_OUTPUT)

    finding = hosts.judge_ports(HOST, table, listening=[443], private_ports=[22, 5432, 6379], public_ports=None)

    assert finding.outcome == "failed"
    assert "0.0.0.0:22, [::]:22" in finding.summary
    assert finding.observed["exposed_private"] == ["0.0.0.0:22", "[::]:22"]


def test_private_and_loopback_bindings_pass() -> None:
    finding = hosts.judge_ports(HOST, hosts.parse_ss(SS_OUTPUT), listening=[443, 5432], private_ports=[5432, 6379, 53], public_ports=None)

    assert finding.outcome == "passed", finding.summary


def test_with_public_ports_anything_else_public_is_unexpected() -> None:
    finding = hosts.judge_ports(HOST, hosts.parse_ss(SS_OUTPUT), listening=[], private_ports=[], public_ports=[443])

    assert finding.outcome == "failed"
    assert finding.observed["unexpected_public"] == ["0.0.0.0:22", "[::]:22"]


def test_an_expected_port_that_does_not_listen_fails() -> None:
    finding = hosts.judge_ports(HOST, hosts.parse_ss(SS_OUTPUT), listening=[443, 8443], private_ports=[], public_ports=None)

    assert finding.outcome == "failed"
    assert "not listening: 8443" in finding.summary


def test_socket_output_that_cannot_be_read_is_an_error() -> None:
    finding = hosts.judge_ports(HOST, ListenerTable("ss", (), ("garbage",)), listening=[], private_ports=[5432], public_ports=None)

    assert finding.outcome == "error"


# --------------------------------------------------------------------------- certificate files


def _pem(not_before: datetime, not_after: datetime, name: str = "api.example.test") -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _reading(pem: bytes | None = None, *, key_mode: int | None = 0o600, **changes: object) -> CertFileReading:
    values: dict[str, object] = {
        "cert": "/etc/app/tls.crt",
        "pem": pem,
        "key": "/etc/app/tls.key",
        "key_mode": key_mode,
        "key_owner": "root:app",
    }
    values.update(changes)
    return CertFileReading(**values)  # type: ignore[arg-type]


def _judge(*readings: CertFileReading, max_key_mode: str = "0640", min_days: int = 14) -> hosts.Finding:
    return hosts.judge_cert_files(HOST, readings, max_key_mode=max_key_mode, min_days=min_days, now=NOW)


def test_a_valid_certificate_and_a_tight_key_pass() -> None:
    finding = _judge(_reading(_pem(NOW - timedelta(days=1), NOW + timedelta(days=90))))

    assert finding.outcome == "passed", finding.summary
    assert finding.observed == {"days_left": 90.0, "keys": {"/etc/app/tls.key": "0600"}}


@pytest.mark.parametrize(
    ("mode", "outcome"),
    [(0o600, "passed"), (0o640, "passed"), (0o400, "passed"), (0o644, "failed"), (0o660, "failed"), (0o4600, "failed"), (0o700, "failed")],
)
def test_a_key_mode_is_wider_when_any_bit_is_outside_the_allowed_mask(mode: int, outcome: str) -> None:
    finding = _judge(_reading(_pem(NOW - timedelta(days=1), NOW + timedelta(days=90)), key_mode=mode))

    assert finding.outcome == outcome, finding.summary


@pytest.mark.parametrize(
    ("not_before", "not_after", "words"),
    [
        (NOW - timedelta(days=400), NOW - timedelta(days=1), "expired on 2026-11-25"),
        (NOW - timedelta(days=80), NOW + timedelta(days=10), "expires in 10.0 days, policy 14"),
        (NOW + timedelta(days=1), NOW + timedelta(days=90), "is not valid before"),
    ],
)
def test_certificates_expired_expiring_or_not_yet_valid_fail(not_before: datetime, not_after: datetime, words: str) -> None:
    finding = _judge(_reading(_pem(not_before, not_after)))

    assert finding.outcome == "failed"
    assert words in finding.summary


def test_every_certificate_of_a_chain_file_is_judged() -> None:
    chain = _pem(NOW - timedelta(days=1), NOW + timedelta(days=90)) + _pem(NOW - timedelta(days=900), NOW - timedelta(days=2), "Old Root")

    finding = _judge(_reading(chain))

    assert finding.outcome == "failed"
    assert "CN=Old Root expired" in finding.summary
    assert len(finding.evidence["files"][0]["certificates"]) == 2


def test_missing_files_fail_and_garbage_is_not_a_certificate() -> None:
    missing = _judge(_reading(None, cert_missing=True, key_missing=True, key_mode=None))
    garbage = _judge(_reading(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"))

    assert missing.outcome == "failed"
    assert "/etc/app/tls.crt does not exist" in missing.summary and "key /etc/app/tls.key does not exist" in missing.summary
    assert garbage.outcome == "failed" and "does not parse as PEM X.509" in garbage.summary


def test_an_unreadable_certificate_is_an_error() -> None:
    finding = _judge(_reading(None, cert_problem="not readable by the gate's user on the host"))

    assert finding.outcome == "error"


def test_stat_output_is_read() -> None:
    assert hosts.parse_stat("640 root:ssl-cert\n") == (0o640, "root:ssl-cert")
    with pytest.raises(ValueError, match="unexpected stat output"):
        hosts.parse_stat("stat: illegal option -- c\n")


# --------------------------------------------------------------------------- time sync

# Captured from chronyc -n tracking (chrony 4.3), synchronised and not.
CHRONY_SYNCED = """\
Reference ID    : C0248F61 (192.36.143.97)
Stratum         : 2
Ref time (UTC)  : Thu Nov 26 18:00:00 2026
System time     : 0.000012345 seconds fast of NTP time
Last offset     : +0.000004567 seconds
RMS offset      : 0.000023456 seconds
Frequency       : 12.345 ppm slow
Residual freq   : +0.001 ppm
Skew            : 0.012 ppm
Root delay      : 0.023456789 seconds
Root dispersion : 0.001234567 seconds
Update interval : 1025.5 seconds
Leap status     : Normal
"""
CHRONY_UNSYNCED = CHRONY_SYNCED.replace("C0248F61 (192.36.143.97)", "00000000 ()").replace("Normal", "Not synchronised")


@pytest.mark.parametrize(
    ("parse", "rc", "stdout", "stderr", "synchronized"),
    [
        (hosts.parse_timedatectl, 0, "yes\n", "", True),
        (hosts.parse_timedatectl, 0, "no\n", "", False),
        (hosts.parse_timedatectl, 1, "", "System has not been booted with systemd as init system (PID 1). Can't operate.\n", None),
        (hosts.parse_timedatectl, 1, "", "Unknown operation show\n", None),  # systemd older than 239
        (hosts.parse_chronyc, 0, CHRONY_SYNCED, "", True),
        (hosts.parse_chronyc, 0, CHRONY_UNSYNCED, "", False),
        (hosts.parse_chronyc, 1, "", "506 Cannot talk to daemon\n", None),
        (hosts.parse_ntpstat, 0, "synchronised to NTP server (10.0.0.1) at stratum 3\n   time correct to within 42 ms\n", "", True),
        (hosts.parse_ntpstat, 1, "unsynchronised\n  time server re-starting\n", "", False),
        (hosts.parse_ntpstat, 2, "Unable to talk to NTP daemon. Is it running?\n", "", None),
        (hosts.parse_ntpstat, 127, "", "sh: 1: ntpstat: not found\n", None),
    ],
)
def test_clock_tools_are_read(parse: object, rc: int, stdout: str, stderr: str, synchronized: bool | None) -> None:
    answer = parse(rc, stdout, stderr)  # type: ignore[operator]

    assert answer.synchronized is synchronized


def test_the_first_tool_that_can_tell_decides() -> None:
    answers = [ToolAnswer("timedatectl", None, "Failed to connect to bus"), ToolAnswer("chronyc", False, "Leap status: Not synchronised")]

    finding = hosts.judge_time_sync(HOST, answers)

    assert finding.outcome == "failed"
    assert finding.summary == f"{HOST}: clock not synchronised (chronyc: Leap status: Not synchronised)"


def test_a_host_that_cannot_tell_is_an_error_naming_what_each_tool_said() -> None:
    answers = [ToolAnswer("timedatectl", None, "Failed to connect to bus"), ToolAnswer("chronyc", None, "not installed")]

    finding = hosts.judge_time_sync(HOST, answers)

    assert finding.outcome == "error"
    assert "timedatectl: Failed to connect to bus; chronyc: not installed" in finding.summary


# --------------------------------------------------------------------------- shared


def test_a_password_in_a_host_spec_is_never_shown() -> None:
    assert hosts.host_label("ssh://deploy:s3cret-pw@app1:2222?timeout=5") == "ssh://deploy:***@app1:2222?timeout=5"
    assert hosts.host_label("deploy:s3cret-pw@app1") == "paramiko://deploy:***@app1"
    assert hosts.host_label("kubectl://api-0?namespace=prod&container=api") == "kubectl://api-0?namespace=prod&container=api"
    assert hosts.host_label("local://") == "local://"


def test_a_long_list_of_problems_stays_one_bounded_line() -> None:
    usages = [DiskUsage(f"/data/{i}", missing=True) for i in range(12)]

    finding = hosts.judge_disk(HOST, usages, max_percent=85)

    assert finding.summary.endswith("/data/4 does not exist; and 7 more")
    assert len(finding.evidence["mounts"]) == 12
