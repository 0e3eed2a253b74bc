"""How metaray meets Ray before any cluster: the token file, the loopback switch. No Ray is started here."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys

from metaray.cluster import LOOPBACK_SWITCH, is_loopback, secure_token_file, token_file


def test_a_missing_token_file_is_created_readable_by_its_owner_only(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    secure_token_file(create=True)
    path = tmp_path / ".ray" / "auth_token"
    assert token_file() == path and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert re.fullmatch(r"[0-9a-f]{64}", path.read_text())  # 32 random bytes in hex, as Ray's own generator writes


def test_a_looser_token_file_is_tightened_and_said(tmp_path, monkeypatch):
    path = tmp_path / "token"
    path.write_text("abc")
    path.chmod(0o644)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(path))
    said = []
    secure_token_file(said.append)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert said == [f"ray: {path} was readable by other users (0644); it is now 0600"]
    secure_token_file(said.append)
    assert len(said) == 1  # nothing to say the second time


def test_the_command_sets_ray_s_environment_before_ray_is_imported():
    code = ("import os, sys\nfrom metaray.cli import _ray_environment\n"
            "class A: command, address, set, experiment = 'run', None, [], sys.argv[1]\n"
            "_ray_environment(A)\nprint(os.environ.get('" + LOOPBACK_SWITCH + "'), os.environ.get('RAY_AUTH_MODE'), "
            "'ray' in sys.modules)\n")
    env = {k: v for k, v in os.environ.items() if k not in (LOOPBACK_SWITCH, "RAY_AUTH_MODE")}
    spec = os.path.join(os.path.dirname(__file__), "..", "experiments", "meta_classification_iris.yaml")
    local = subprocess.run([sys.executable, "-c", code, spec], env=env, capture_output=True, text=True, timeout=60)
    assert local.stdout.split() == ["0", "token", "False"], local.stderr
    assert is_loopback(None) and is_loopback("127.0.0.1:6390") and is_loopback("[::1]:6379")
    assert not is_loopback("10.1.2.3:6379") and not is_loopback("auto")
