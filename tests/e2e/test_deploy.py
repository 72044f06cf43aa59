"""The deployment files under deploy/: the Compose file, the KubeRay manifest and the
Dockerfiles checked against the code (subcommands, paths, services, loopback-only ports),
and deploy/local-stack.sh run for real: up, a run submitted and finished, down."""

from __future__ import annotations

import argparse
import glob
import ipaddress
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from sqlalchemy.engine import make_url

from automl.cli.main import build_parser
from automl.client import Client

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
RAYCLUSTER = DEPLOY / "kuberay" / "raycluster.yaml"
MIGRATE_JOB = DEPLOY / "kuberay" / "migrate-job.yaml"
SCRIPT = DEPLOY / "local-stack.sh"
DOCKERFILES = (DEPLOY / "docker" / "Dockerfile.cpu", DEPLOY / "docker" / "Dockerfile.cuda")
SPACE = {"max_epochs": 5, "patience": 2, "n_layers": 1, "units": 16}

# `automl SUBCOMMAND` inside a command line or shell script: the word automl on its own
# (not automl_reader, automl-stack, /opt/automl/...) followed by a word.
AUTOML_CALL = re.compile(r"(?<![\w/.$-])automl(?![\w.-])\s+([A-Za-z][\w-]*)(?:\s+([\w-]+))?")


# ---- static checks ---------------------------------------------------------------------
def subparser_choices(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def check_automl_calls(text: str, where: str) -> list[str]:
    """Every `automl X [Y]` in ``text`` names a real subcommand (and sub-subcommand)."""
    commands = subparser_choices(build_parser())
    found = []
    for match in AUTOML_CALL.finditer(text):
        sub, subsub = match.group(1), match.group(2)
        assert sub in commands, f"{where}: `automl {sub}` is no subcommand of {sorted(commands)}"
        nested = subparser_choices(commands[sub])
        if nested:
            assert subsub in nested, \
                f"{where}: `automl {sub} {subsub}` is not one of {sorted(nested)}"
            sub = f"{sub} {subsub}"
        found.append(sub)
    return found


def as_words(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


def builds_automl_image(service: dict[str, Any]) -> bool:
    build = service.get("build")
    return isinstance(build, dict) and "deploy/docker/Dockerfile" in str(build.get("dockerfile"))


def test_compose_file_is_consistent_with_the_code_and_the_tree() -> None:
    compose = load_compose()
    services: dict[str, dict[str, Any]] = compose["services"]
    assert {"postgres", "migrate", "ray-head", "worker", "worker-gpu", "dashboard"} <= set(services)
    calls: dict[str, list[str]] = {}
    for name, service in services.items():
        # the command line the container runs: our images' entry point is `automl`
        entrypoint = as_words(service.get("entrypoint"))
        if not entrypoint and builds_automl_image(service):
            entrypoint = ["automl"]
        argv = entrypoint + as_words(service.get("command"))
        calls[name] = check_automl_calls(shlex.join(argv), f"compose service {name}")

        build = service.get("build")
        if build is not None:
            context = COMPOSE.parent / (build if isinstance(build, str) else build["context"])
            assert context.is_dir(), f"{name}: build context {context} does not exist"
            if isinstance(build, dict) and "dockerfile" in build:
                dockerfile = context / build["dockerfile"]
                assert dockerfile.is_file(), f"{name}: Dockerfile {dockerfile} does not exist"
                assert (context / "pyproject.toml").is_file(), f"{name}: context is not the repo"

        depends = service.get("depends_on", {})
        for dep in depends if isinstance(depends, list) else depends.keys():
            assert dep in services, f"{name} depends on undefined service {dep!r}"
            if isinstance(depends, dict):
                condition = depends[dep].get("condition", "service_started")
                if condition == "service_healthy":
                    assert "healthcheck" in services[dep], f"{name} waits for {dep}'s health"

        assert service.get("network_mode") != "host", f"{name} uses the host's network"
        for port in service.get("ports", []):
            if isinstance(port, dict):
                host_ip = port.get("host_ip")
            else:  # HOST_IP:HOST_PORT:CONTAINER_PORT
                host_ip = str(port).rsplit(":", 2)[0] if str(port).count(":") >= 2 else None
            assert host_ip == "127.0.0.1", f"{name} publishes {port!r} beyond 127.0.0.1"

        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0] if isinstance(volume, str) else ""
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name}: mount {source} missing"

        for url_key in ("AUTOML_STORAGE",):
            env = service.get("environment") or {}
            if isinstance(env, dict) and url_key in env:
                assert make_url(env[url_key]).password is None, f"{name}: password in URL"

    assert calls["migrate"] == ["db upgrade"]
    assert calls["worker"] == ["worker"] and calls["worker-gpu"] == ["worker"]
    assert services["worker-gpu"].get("profiles") == ["gpu"]
    assert "Dockerfile.cuda" in services["worker-gpu"]["build"]["dockerfile"]
    devices = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d.get("capabilities", []) for d in devices)
    worker = services["worker"]
    assert "container_name" not in worker and not worker.get("ports"), "worker must scale"
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["postgres"]["image"].startswith("postgres:15")
    assert any(str(v).startswith("pgdata:") for v in services["postgres"]["volumes"])
    ray_head = services["ray-head"]
    assert as_words(ray_head["entrypoint"]) == ["ray"]
    assert {"start", "--head", "--block"} <= set(as_words(ray_head["command"]))
    assert ray_head["environment"]["RAY_AUTH_MODE"] == "token"


def test_kuberay_manifest_runs_automl_workers_beside_ray() -> None:
    docs = [d for d in yaml.safe_load_all(RAYCLUSTER.read_text()) if d]
    (cluster,) = [d for d in docs if d.get("kind") == "RayCluster"]
    assert cluster["apiVersion"] == "ray.io/v1"
    spec = cluster["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec.get("authOptions", {}).get("mode") == "token"
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    check_automl_calls(" ".join(as_words(head.get("command")) + as_words(head.get("args"))),
                       "ray head")
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    gpu_groups = []
    for name, group in groups.items():
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], name
        container = group["template"]["spec"]["containers"][0]
        script = "\n".join(as_words(container.get("command"))[-1:] + container.get("args", []))
        assert check_automl_calls(script, f"worker group {name}") == ["worker"], name
        assert "$KUBERAY_GEN_RAY_START_CMD" in script, f"{name} does not start Ray"
        syntax = subprocess.run(["bash", "-n", "-c", "\n".join(container["args"])],
                                capture_output=True, text=True, timeout=30)
        assert syntax.returncode == 0, f"{name}: {syntax.stderr}"
        env = {e["name"]: e for e in container.get("env", [])}
        assert make_url(env["AUTOML_STORAGE"]["value"]).password is None
        assert "secretKeyRef" in env["PGPASSWORD"].get("valueFrom", {}), name
        limits = container["resources"]["limits"]
        if "nvidia.com/gpu" in limits:
            gpu_groups.append(name)
            assert container["image"].endswith(":cuda"), name
        else:
            assert container["image"].endswith(":cpu"), name
    assert len(gpu_groups) == 1 and len(groups) >= 2


def test_kuberay_migration_job_runs_db_upgrade() -> None:
    (job,) = [d for d in yaml.safe_load_all(MIGRATE_JOB.read_text()) if d]
    assert job["kind"] == "Job"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    # no `command`: the image's entry point, `automl`, runs with these args
    argv = as_words(container.get("command")) or ["automl"]
    assert check_automl_calls(shlex.join(argv + as_words(container.get("args"))),
                              "migrate job") == ["db upgrade"]
    env = {e["name"]: e for e in container["env"]}
    assert make_url(env["AUTOML_STORAGE"]["value"]).password is None
    assert "secretKeyRef" in env["PGPASSWORD"]["valueFrom"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_runs_automl_as_an_unprivileged_user(dockerfile: Path) -> None:
    lines = dockerfile.read_text().splitlines()
    instructions = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    (entrypoint,) = [ln for ln in instructions if ln.upper().startswith("ENTRYPOINT")]
    assert json.loads(entrypoint.split(None, 1)[1]) == ["automl"]
    users = [ln.split(None, 1)[1] for ln in instructions if ln.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "runs as root"
    text = dockerfile.read_text()
    assert '".[worker]"' in text, "the worker extras are not installed"
    for line in instructions:  # build context = the repository root
        words = line.split()
        if words[0].upper() == "COPY" and not words[1].startswith("--"):
            for source in words[1:-1]:
                assert (ROOT / source).exists(), f"{dockerfile.name} copies missing {source}"


def test_local_stack_script_parses() -> None:
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    assert os.access(SCRIPT, os.X_OK)


# ---- the real local stack ----------------------------------------------------------------
def run_script(*args: str, env: dict[str, str], log: Path,
               timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run the script with its output in a file: the daemons it leaves running must not
    hold a pipe of ours open."""
    with log.open("a+") as out:
        out.write(f"\n$ local-stack.sh {' '.join(args)}\n")
        out.flush()
        start = out.tell()
        proc = subprocess.run([str(SCRIPT), *args], env=env, stdin=subprocess.DEVNULL,
                              stdout=out, stderr=subprocess.STDOUT, text=True, timeout=timeout)
        out.seek(start)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), "")


def read_env_file(path: Path) -> dict[str, str]:
    """What `source ENV_FILE` exports, as bash sees it."""
    names = re.findall(r"^export (\w+)=", path.read_text(), flags=re.MULTILINE)
    out = subprocess.run(["bash", "-c", '. "$1" && shift && for v; do printf "%s\\0%s\\0" '
                          '"$v" "${!v}"; done', "bash", str(path), *names],
                         env={"PATH": os.environ["PATH"]}, capture_output=True, text=True,
                         timeout=30, check=True).stdout.split("\0")
    return dict(zip(out[0:-1:2], out[1::2], strict=True))


def recorded(run_dir: Path) -> dict[str, tuple[int, int]]:
    """The stack's pid files: name -> (pid, start time in clock ticks)."""
    found = {}
    for f in run_dir.glob("*.pid"):
        pid, start = f.read_text().split()
        found[f.stem] = (int(pid), int(start))
    return found


def stat_of(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # [0] state, [3] session, [19] start time


def running(pid: int, start: int) -> bool:
    """That very process (same start time) exists and is not a zombie."""
    fields = stat_of(pid)
    return fields is not None and int(fields[19]) == start and fields[0] not in ("Z", "X")


def session_members(leader: int) -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = stat_of(int(entry.name))
            if fields and int(fields[3]) == leader and fields[0] not in ("Z", "X"):
                yield int(entry.name)


def listening_addresses(pids: set[int]) -> set[str]:
    """Addresses the given processes listen on (TCP, from /proc/net)."""
    inodes = set()
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(int(link[8:-1]))
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] != "0A" or int(fields[9]) not in inodes:  # 0A: LISTEN
                continue
            hex_ip, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_ip)
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            ip = ipaddress.ip_address(raw)
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
                ip = ip.ipv4_mapped
            addresses.add(f"{ip}:{int(hex_port, 16)}")
    return addresses


def pg_data_dir(state: Path) -> Path:
    pgdir = state / "pgdir"
    return Path(pgdir.read_text().strip() if pgdir.exists() else state / "pg") / "data"


def pg_ctl_status(state: Path) -> subprocess.CompletedProcess[str]:
    bindir = re.search(r"^PG_BINDIR=(.*)$", (state / "stack.conf").read_text(), re.MULTILINE)
    assert bindir is not None
    cmd = [str(Path(bindir.group(1).strip()) / "pg_ctl"), "status", "-D",
           str(pg_data_dir(state))]
    if os.geteuid() == 0:  # pg_ctl refuses root; the script ran the server as postgres
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def postmaster_pid(state: Path) -> int | None:
    try:
        return int((pg_data_dir(state) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@pytest.fixture
def stack_env(tmp_path: Path) -> dict[str, str]:
    candidates = [os.environ.get("PGSERVER_BINDIR", ""), *glob.glob("/usr/lib/postgresql/*/bin")]
    if not any(c and shutil.which("initdb", path=c) for c in candidates):
        if os.environ.get("PGSERVER_REQUIRED", "") not in ("", "0"):
            pytest.fail("PGSERVER_REQUIRED is set but PostgreSQL 15 is not installed")
        pytest.skip("PostgreSQL server binaries not installed")
    bindir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "RAY_", "AUTOML_"))}
    return {**env, "AUTOML_STACK_DIR": str(tmp_path / "stack"), "PYTHON": sys.executable,
            "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}


def test_local_stack_up_submit_down(tmp_path: Path, stack_env: dict[str, str],
                                    digits_frame: pd.DataFrame,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    state = Path(stack_env["AUTOML_STACK_DIR"])
    log = tmp_path / "local-stack.log"
    started: dict[str, tuple[int, int]] = {}
    try:
        up = run_script("up", "--workers", "1", env=stack_env, log=log, timeout=300)
        started = recorded(state / "run")
        assert up.returncode == 0, up.stdout
        assert set(started) == {"ray-head", "worker-1", "dashboard"}, started
        assert all(running(*p) for p in started.values()), started

        env = read_env_file(state / "env")
        url = env["AUTOML_STORAGE"]
        assert make_url(url).password is None and make_url(url).host == "127.0.0.1"
        for secret in (Path(env["PGPASSFILE"]), Path(env["RAY_AUTH_TOKEN_PATH"])):
            assert secret.stat().st_mode & 0o077 == 0, f"{secret} readable by others"
        status = run_script("status", env=stack_env, log=log, timeout=60)
        assert status.returncode == 0, status.stdout

        # Everything it started listens on loopback only (Ray's daemons included).
        ours = {pid for name, (pid, _) in started.items()
                for pid in [pid, *session_members(pid)]}
        ours.add(postmaster_pid(state) or -1)
        listening = listening_addresses(ours)
        assert any(a.endswith(f":{make_url(url).port}") for a in listening), listening
        assert all(ipaddress.ip_address(a.rsplit(":", 1)[0]).is_loopback
                   for a in listening), listening

        for key, value in env.items():  # libpq reads PGPASSFILE from our environment
            monkeypatch.setenv(key, value)
        client = Client(url)
        try:
            run = client.submit(digits_frame, "target", space=SPACE, n_trials=3, n_seeds=1)
            result = run.wait(progress=False, timeout=300)
        finally:
            client.close()
        assert result["n_trials"] == 3
        assert result["n_complete"] + result["n_pruned"] + result["n_failed"] == 3
    finally:
        postmaster = postmaster_pid(state)
        down = run_script("down", env=stack_env, log=log, timeout=180)
    try:
        assert down.returncode == 0, down.stdout
        left = {name: p for name, p in started.items() if running(*p)}
        assert not left, f"still running after down: {left}"
        for name, (pid, _) in started.items():
            assert not list(session_members(pid)), f"{name}'s children outlived down"
        pg = pg_ctl_status(state)
        assert pg.returncode == 3 and "no server running" in pg.stdout, pg.stdout
        if postmaster is not None:
            fields = stat_of(postmaster)
            assert fields is None or fields[0] in ("Z", "X"), "the postmaster still runs"
        ray_port = int(read_env_file(state / "env")["AUTOML_RAY_ADDRESS"].rsplit(":", 1)[1])
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", ray_port), 2):
            pass  # the Ray head's GCS port is closed
        again = run_script("down", env=stack_env, log=log, timeout=120)
        assert again.returncode == 0, again.stdout  # safe to call twice
        status = run_script("status", env=stack_env, log=log, timeout=60)
        assert status.returncode == 3 and "nothing running" in status.stdout, status.stdout
    finally:
        run_script("down", "--purge", env=stack_env, log=log, timeout=120)
    assert not state.exists()
