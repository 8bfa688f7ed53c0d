"""The audit context scopes (audit_context, merge_audit_context) and the command-line context."""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from better_audit import commands
from better_audit.context import (
    AuditContext,
    audit_context,
    get_audit_context,
    merge_audit_context,
    reset_audit_context,
    set_audit_context,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_context():
    assert get_audit_context() is None
    yield
    assert get_audit_context() is None


# --- audit_context ------------------------------------------------------------------------------


def test_audit_context_sets_the_fields_for_the_block_and_restores_none():
    with audit_context(
        actor_id=42,
        reason="scheduled cleanup",
        compliance=["gdpr", "soc2", "gdpr"],
        metadata={"job": "cleanup"},
    ) as context:
        assert get_audit_context() is context
        assert context.actor_id == "42"
        assert context.compliance == ("gdpr", "soc2")
        assert context.metadata == {"job": "cleanup"}
        assert uuid.UUID(context.correlation_id).version == 4
    assert get_audit_context() is None


def test_nested_audit_context_starts_fresh_and_the_outer_one_comes_back():
    with audit_context(actor_id="outer", reason="r", metadata={"a": 1}) as outer:
        with audit_context(actor_id="inner") as inner:
            assert get_audit_context() is inner
            assert inner.reason is None and inner.metadata == {}
            assert inner.correlation_id != outer.correlation_id
        assert get_audit_context() is outer


def test_context_is_restored_when_the_block_raises():
    with pytest.raises(RuntimeError), audit_context(actor_id="doomed"):
        raise RuntimeError("boom")
    assert get_audit_context() is None


def test_merge_overrides_fields_and_merges_metadata():
    with audit_context(
        actor_id="u-1", reason="base", compliance=["soc2"], metadata={"a": 1, "b": 2}
    ) as base:
        with merge_audit_context(reason="gdpr erasure", metadata={"b": 3, "c": 4}) as merged:
            assert merged.actor_id == "u-1"
            assert merged.reason == "gdpr erasure"
            assert merged.compliance == ("soc2",)
            assert merged.metadata == {"a": 1, "b": 3, "c": 4}
            assert merged.correlation_id == base.correlation_id
            with merge_audit_context(compliance="hipaa", label="Record viewed") as deeper:
                assert deeper.compliance == ("hipaa",)
                assert deeper.label == "Record viewed"
                assert deeper.reason == "gdpr erasure"
            assert get_audit_context() is merged
        assert get_audit_context() is base
        assert base.metadata == {"a": 1, "b": 2}


def test_merge_outside_any_context_creates_one():
    with merge_audit_context(actor_id="solo") as context:
        assert context.actor_id == "solo"
        assert uuid.UUID(context.correlation_id).version == 4


def test_lazy_actor_is_called_at_resolution_and_a_fixed_one_replaces_it():
    who = ["first"]
    with audit_context(actor=lambda: who[0]) as context:
        assert context.actor_id is None
        assert context.resolve_actor_id() == "first"
        who[0] = "second"
        assert context.resolve_actor_id() == "second"
        assert context.as_dict()["actor_id"] == "second"
        with merge_audit_context(actor_id="fixed") as merged:
            who[0] = "third"
            assert merged.resolve_actor_id() == "fixed"
        who[0] = ""
        assert context.resolve_actor_id() is None


def test_as_dict_is_plain_data():
    with audit_context(actor_id="a", compliance=("pci",), metadata={"k": "v"}) as context:
        data = context.as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["actor_id"] == "a" and data["compliance"] == ["pci"]


def test_wrong_fields_are_rejected_with_the_allowed_names():
    with pytest.raises(TypeError, match=r"Unknown audit context field.*actorId.*Allowed: actor_id"):
        audit_context(actorId="x")
    with pytest.raises(TypeError, match="metadata must be a dict"):
        merge_audit_context(metadata=["x"])


def test_low_level_set_and_reset():
    context = AuditContext(actor_id="raw")
    token = set_audit_context(context)
    try:
        assert get_audit_context() is context
    finally:
        reset_audit_context(token)


# --- decorators, async, threads -----------------------------------------------------------------


@audit_context(actor_id="system:cleanup", reason="nightly")
def cleanup_job(depth: int = 0) -> list[tuple[str, str]]:
    context = get_audit_context()
    seen = [(context.actor_id, context.correlation_id)]
    if depth < 1:
        seen += cleanup_job(depth + 1)
    return seen


def test_decorator_runs_each_call_in_the_context():
    first = cleanup_job()
    second = cleanup_job()
    assert [actor for actor, _ in first + second] == ["system:cleanup"] * 4
    # The correlation id is fixed when the decorator is applied: one per decorated job.
    assert len({correlation for _, correlation in first + second}) == 1


@merge_audit_context(reason="gdpr")
def merged_step() -> tuple[str | None, str | None]:
    context = get_audit_context()
    return context.actor_id, context.reason


def test_merge_decorator_layers_over_the_callers_context():
    with audit_context(actor_id="caller"):
        assert merged_step() == ("caller", "gdpr")
    assert merged_step() == (None, "gdpr")


def test_async_tasks_each_keep_their_own_context():
    @audit_context(reason="async job")
    async def job(actor: str) -> list[str | None]:
        seen = []
        async with merge_audit_context(actor_id=actor):
            for _ in range(5):
                await asyncio.sleep(0)
                seen.append(get_audit_context().actor_id)
        seen.append(get_audit_context().actor_id)
        return seen

    async def main() -> list[list[str | None]]:
        return await asyncio.gather(*(job(f"a-{n}") for n in range(50)))

    results = asyncio.run(main())
    assert results == [[f"a-{n}"] * 5 + [None] for n in range(50)]


def test_threads_start_without_the_context_unless_it_is_copied():
    seen: dict[str, str | None] = {}

    def read(key: str) -> None:
        context = get_audit_context()
        seen[key] = context.actor_id if context else None

    with audit_context(actor_id="parent"):
        plain = threading.Thread(target=read, args=("plain",))
        copied_context = contextvars.copy_context()
        copied = threading.Thread(target=copied_context.run, args=(read, "copied"))
        for thread in (plain, copied):
            thread.start()
            thread.join()
    assert seen == {"plain": None, "copied": "parent"}


# --- management commands ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["manage.py", "migrate"], "migrate"),
        (["/srv/app/manage.py", "shell", "-c", "x"], "shell"),
        (["/usr/bin/django-admin", "better_audit", "purge"], "better_audit"),
        (["/venv/lib/python3.12/site-packages/django/__main__.py", "check"], "check"),
        (["manage.py"], None),
        (["manage.py", "--help"], None),
        (["/venv/bin/pytest", "tests"], None),
        (["/venv/bin/celery", "-A", "proj", "worker"], None),
        (["gunicorn", "proj.wsgi"], None),
    ],
)
def test_command_name_is_found_only_for_management_commands(argv, name):
    assert commands.command_name(argv) == name


def test_command_context_is_installed_except_for_servers_and_tests(monkeypatch):
    monkeypatch.delenv(commands.ACTOR_ENV, raising=False)
    monkeypatch.setattr(commands.getpass, "getuser", lambda: "ops")

    def install(argv: list[str]) -> tuple[AuditContext | None, AuditContext | None]:
        return contextvars.copy_context().run(
            lambda: (commands.install_command_context(argv), get_audit_context())
        )

    installed, current = install(["manage.py", "migrate"])
    assert installed is current
    assert installed.actor_id == "cli:ops"
    assert installed.metadata == {"command": "migrate"}
    assert uuid.UUID(installed.correlation_id).version == 4
    for server in ("runserver", "testserver", "test"):
        assert install(["manage.py", server]) == (None, None)


def test_command_actor_from_the_environment_or_a_uid(monkeypatch):
    monkeypatch.setenv(commands.ACTOR_ENV, "deploy-bot")
    assert commands.command_actor() == "deploy-bot"
    monkeypatch.delenv(commands.ACTOR_ENV)

    def no_user() -> str:
        raise OSError("No username set in the environment")

    monkeypatch.setattr(commands.getpass, "getuser", no_user)
    assert commands.command_actor() == f"cli:uid-{os.getuid()}"


def test_command_context_scope_for_call_command(monkeypatch):
    monkeypatch.delenv(commands.ACTOR_ENV, raising=False)
    monkeypatch.setattr(commands.getpass, "getuser", lambda: "ops")
    with commands.command_context("purge") as context:
        assert get_audit_context() is context
        assert context.actor_id == "cli:ops"
        assert context.metadata == {"command": "purge"}


PRINT_CONTEXT = (
    "import json; from better_audit.context import get_audit_context; "
    "print('CONTEXT=' + json.dumps(get_audit_context().as_dict()))"
)


def run_command(program: list[str], **env: str) -> dict:
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **env}
    environment.pop(commands.ACTOR_ENV, None)
    environment.update(env)
    result = subprocess.run(
        [*program, "shell", "-c", PRINT_CONTEXT],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("CONTEXT="))
    return json.loads(line.removeprefix("CONTEXT="))


def test_manage_py_commands_run_with_the_cli_actor():
    import getpass

    context = run_command([sys.executable, "manage.py"])
    assert context["actor_id"] == f"cli:{getpass.getuser()}"
    assert context["metadata"] == {"command": "shell"}
    assert uuid.UUID(context["correlation_id"]).version == 4

    context = run_command([sys.executable, "-m", "django"], BETTER_AUDIT_ACTOR="deploy-bot")
    assert context["actor_id"] == "deploy-bot"
    assert context["metadata"] == {"command": "shell"}
