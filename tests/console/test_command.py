"""manage.py better_console: init, token generate/rotate, migrate (SQL and apply) and check."""

from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core import checks
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from better_console import commands
from better_console.models import ConsoleSession, MagicLink
from better_console.tokens import hash_token, is_valid_token_hash
from better_tenant.testing import connected_as_owner

GOOD_HASH = hash_token("a connection token of the tests")
ADMIN = "admin@example.com"
SCRATCH = "better_console_scratch"


def run(*args: str) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("better_console", *args, stdout=out, stderr=err, no_color=True)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def console(**settings):
    """BETTER_CONSOLE with a valid token hash and magic link sign-in, plus ``settings``."""
    value = {"TOKEN_HASH": GOOD_HASH, "MAGIC_LINK": {"ALLOWED_EMAILS": [ADMIN]}, **settings}
    return override_settings(BETTER_CONSOLE=value)


def printed_pair(out: str) -> tuple[str, str]:
    """The raw token (the line after the 'save this' line) and the hash of the env line."""
    lines = out.splitlines()
    token = lines[lines.index("Connection token (save this, it won't be shown again):") + 1]
    (hash_line,) = [line for line in lines if line.startswith("BETTER_CONSOLE_TOKEN_HASH=")]
    return token.strip(), hash_line.split("=", 1)[1]


@pytest.fixture(autouse=True)
def _no_console_environment(monkeypatch):
    """The settings default to these variables; the tests decide what is set."""
    monkeypatch.delenv("BETTER_CONSOLE_TOKEN_HASH", raising=False)
    monkeypatch.delenv("BETTER_CONSOLE_ALLOWED_EMAILS", raising=False)


def add_rows() -> None:
    expires = timezone.now() + timedelta(hours=1)
    for n in range(2):
        ConsoleSession.objects.create(
            session_id=f"sess_{n}", email=ADMIN, token_hash=f"{n:064x}", expires_at=expires
        )
    MagicLink.objects.create(
        session_id="sess_pending", email=ADMIN, code_hash="0" * 64, expires_at=expires
    )
    MagicLink.objects.create(
        session_id="sess_0",
        email=ADMIN,
        code_hash="1" * 64,
        expires_at=expires,
        claimed_at=timezone.now(),
        token_hash=f"{0:064x}",
    )


# --- init ----------------------------------------------------------------------------------------


def test_init_prints_the_token_once_and_the_two_environment_lines():
    code, out, _ = run("init", "--email", ADMIN, "-n")
    assert code == 0
    token, token_hash = printed_pair(out)
    assert hash_token(token) == token_hash and is_valid_token_hash(token_hash)
    assert out.count(token) == 1
    assert f"BETTER_CONSOLE_ALLOWED_EMAILS={ADMIN}" in out.splitlines()
    assert "BETTER_CONSOLE = {'MAGIC_LINK': {}}" in out


def test_init_makes_a_new_token_every_time():
    first = printed_pair(run("init", "--email", ADMIN, "-n")[1])
    second = printed_pair(run("init", "--email", ADMIN, "-n")[1])
    assert first[0] != second[0] and first[1] != second[1]


def test_init_accepts_several_addresses_and_drops_repeats():
    _, out, _ = run("init", "--email", f"{ADMIN}, ops@example.com,{ADMIN}", "-n")
    assert f"BETTER_CONSOLE_ALLOWED_EMAILS={ADMIN},ops@example.com" in out.splitlines()


def test_init_non_interactive_without_email_names_the_flag():
    with pytest.raises(CommandError, match=r"--email is required with -n/--non-interactive"):
        run("init", "--non-interactive")


@pytest.mark.parametrize("email", ["not-an-address", "admin@", " , "])
def test_init_rejects_a_bad_email(email):
    with pytest.raises(CommandError, match=r"^--email: "):
        run("init", "--email", email, "-n")


def test_init_asks_for_the_email_until_it_is_valid(monkeypatch):
    answers = iter(["nope", "ops@example.com"])
    prompts = []
    monkeypatch.setattr("builtins.input", lambda prompt: prompts.append(prompt) or next(answers))
    code, out, err = run("init")
    assert code == 0
    assert prompts == ["Admin email address: "] * 2
    assert "'nope' is not an email address" in err
    assert "BETTER_CONSOLE_ALLOWED_EMAILS=ops@example.com" in out.splitlines()


def test_init_without_an_answer_asks_for_the_flag(monkeypatch):
    def closed_stdin(prompt):
        raise EOFError

    monkeypatch.setattr("builtins.input", closed_stdin)
    with pytest.raises(CommandError, match=r"--email is required when no answer can be typed"):
        run("init")


# --- token ---------------------------------------------------------------------------------------


def test_token_generate_prints_a_pair_and_no_warning():
    # No database mark: generating must not touch the database.
    code, out, _ = run("token", "generate")
    assert code == 0
    token, token_hash = printed_pair(out)
    assert hash_token(token) == token_hash
    assert "invalidates" not in out and "ALLOWED_EMAILS" not in out


def test_no_revoke_only_applies_to_rotate():
    with pytest.raises(CommandError, match=r"--no-revoke only applies to `token rotate`"):
        run("token", "generate", "--no-revoke")


@pytest.mark.django_db
def test_token_rotate_warns_and_deletes_every_session_and_magic_link():
    add_rows()
    code, out, _ = run("token", "rotate")
    assert code == 0
    token, token_hash = printed_pair(out)
    assert hash_token(token) == token_hash
    assert "! Rotating invalidates every existing console session" in out
    assert "✓ revoked 2 database sessions and 2 magic links" in out
    assert ConsoleSession.objects.count() == 0 and MagicLink.objects.count() == 0


@pytest.mark.django_db
def test_token_rotate_no_revoke_keeps_the_rows():
    add_rows()
    code, out, _ = run("token", "rotate", "--no-revoke")
    assert code == 0
    assert "! Rotating invalidates every existing console session" in out
    assert "database sessions kept (--no-revoke)" in out
    assert ConsoleSession.objects.count() == 2 and MagicLink.objects.count() == 2


@pytest.mark.django_db
def test_token_rotate_without_the_tables_says_so_and_succeeds(monkeypatch):
    monkeypatch.setattr(ConsoleSession._meta, "db_table", "better_console_sessions_absent")
    code, out, _ = run("token", "rotate")
    assert code == 0
    assert "! the console tables do not exist in the database: no session to revoke" in out
    assert printed_pair(out)[1].startswith("sha256:")


# --- migrate -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_dry_run_prints_idempotent_sql_for_both_tables():
    code, out, _ = run("migrate", "--dry-run")
    assert code == 0
    for model in (ConsoleSession, MagicLink):
        assert f'CREATE TABLE IF NOT EXISTS "{model._meta.db_table}"' in out
    assert re.search(
        r'CREATE INDEX IF NOT EXISTS "\w+" ON "better_console_sessions" \("expires_at"', out
    )
    statements = [line for line in out.splitlines() if line.startswith(("CREATE", "ALTER"))]
    assert statements and all(
        "IF NOT EXISTS" in line for line in statements if line.startswith("CREATE")
    )
    assert out.splitlines()[2] == "BEGIN;" and out.splitlines()[-1] == "COMMIT;"


def test_statements_without_if_not_exists_are_rewritten():
    assert commands.make_idempotent('CREATE UNIQUE INDEX "i" ON "t" ("a");') == (
        'CREATE UNIQUE INDEX IF NOT EXISTS "i" ON "t" ("a");'
    )
    assert commands.make_idempotent('ALTER TABLE "t" ADD COLUMN "b" int NULL;') == (
        'ALTER TABLE "t" ADD COLUMN IF NOT EXISTS "b" int NULL;'
    )
    assert commands.make_idempotent('DROP INDEX "i";') == 'DROP INDEX IF EXISTS "i";'
    wrapped = commands.make_idempotent('ALTER TABLE "t" ADD CONSTRAINT "c" UNIQUE ("a");')
    assert wrapped.startswith("DO $better$") and "duplicate_object OR duplicate_table" in wrapped


@pytest.fixture
def scratch_schema():
    """An empty schema first on the owner's search_path: a database without the console tables."""
    with connected_as_owner():
        with connection.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA IF EXISTS {SCRATCH} CASCADE")
            cursor.execute(f"CREATE SCHEMA {SCRATCH}")
            cursor.execute(f"SET search_path TO {SCRATCH}")
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute(f"DROP SCHEMA IF EXISTS {SCRATCH} CASCADE")


def tables_in_scratch() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename", [SCRATCH]
        )
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.django_db(transaction=True)
def test_dry_run_sql_runs_twice_and_then_passes_check(scratch_schema):
    sql = run("migrate", "--dry-run")[1]
    with console():
        code, out, _ = run("check")
    assert code == 1
    assert f'✗ table "better_console_sessions" not found (schema {SCRATCH})' in out
    assert f'✗ table "better_console_magic_links" not found (schema {SCRATCH})' in out
    assert "`manage.py better_console migrate`" in out

    with connection.cursor() as cursor:
        # django_migrations of this schema: the SQL records the migration there, once.
        cursor.execute(
            "CREATE TABLE django_migrations (id serial PRIMARY KEY, app varchar(255) NOT NULL, "
            "name varchar(255) NOT NULL, applied timestamptz NOT NULL)"
        )
        cursor.execute(sql)
        cursor.execute(sql)
        cursor.execute("SELECT app, name FROM django_migrations")
        assert cursor.fetchall() == [
            ("better_console", name) for name in commands.migration_names()
        ]
    assert tables_in_scratch() == [
        "better_console_magic_links",
        "better_console_sessions",
        "django_migrations",
    ]
    with console():
        code, out, _ = run("check")
    assert code == 0, out
    assert "✓ unique index on better_console_sessions(token_hash)" in out
    assert "✓ index on better_console_sessions(session_id)" in out
    assert "✓ index on better_console_sessions(expires_at)" in out
    assert "✓ unique index on better_console_magic_links(session_id)" in out
    assert "✓ index on better_console_magic_links(expires_at)" in out

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = %s "
            "AND indexdef LIKE %s",
            [SCRATCH, "better_console_sessions", "%(expires_at)"],
        )
        (index,) = cursor.fetchone()
        cursor.execute(f'DROP INDEX "{index}"')
        cursor.execute('ALTER TABLE better_console_magic_links DROP COLUMN "claimed_at"')
    with console():
        code, out, _ = run("check")
    assert code == 1
    assert "✗ index on better_console_sessions(expires_at) is missing" in out
    assert "✗ table better_console_magic_links lacks columns: claimed_at" in out


@pytest.mark.django_db(transaction=True)
def test_rewritten_constraint_and_column_statements_run_twice(scratch_schema):
    statements = [
        'CREATE TABLE "t" ("id" int PRIMARY KEY, "a" int NULL);',
        'ALTER TABLE "t" ADD COLUMN "b" int NULL;',
        'ALTER TABLE "t" ADD CONSTRAINT "t_a_uniq" UNIQUE ("a");',
        'ALTER TABLE "t" ADD CONSTRAINT "t_b_fk" FOREIGN KEY ("b") REFERENCES "t" ("id");',
        'CREATE INDEX "t_b_idx" ON "t" ("b");',
    ]
    with connection.cursor() as cursor:
        for _ in range(2):
            for statement in statements:
                cursor.execute(commands.make_idempotent(statement))
        cursor.execute(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = to_regclass('t') "
            "AND conname IN ('t_a_uniq', 't_b_fk')"
        )
        assert cursor.fetchone() == (2,)


def test_output_refuses_to_overwrite_without_force(tmp_path, db):
    target = tmp_path / "console_tables.sql"
    code, out, _ = run("migrate", "-o", str(target))
    assert code == 0 and f"✓ wrote {target}" in out
    written = target.read_text()
    assert 'CREATE TABLE IF NOT EXISTS "better_console_sessions"' in written
    target.write_text("-- edited by hand\n")
    with pytest.raises(CommandError, match=r"-o/--output: .* exists; pass --force to overwrite"):
        run("migrate", "--output", str(target))
    assert target.read_text() == "-- edited by hand\n"
    assert run("migrate", "-o", str(target), "--force")[0] == 0
    assert target.read_text() == written


def test_output_to_a_directory_names_the_file_by_time(tmp_path, db):
    for folder in (tmp_path, tmp_path / "console-migrations"):
        code, _, _ = run("migrate", "-o", str(folder))
        assert code == 0
        (written,) = folder.glob("*.sql")
        assert re.fullmatch(r"\d{14}_better_console_tables\.sql", written.name)
        assert "COMMIT;" in written.read_text()


def test_force_needs_an_output_and_dry_run_excludes_it(tmp_path):
    with pytest.raises(CommandError, match=r"--force only applies with -o/--output"):
        run("migrate", "--force")
    with pytest.raises(CommandError, match=r"not allowed with argument"):
        run("migrate", "--dry-run", "-o", str(tmp_path / "x.sql"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.django_db(transaction=True)
def test_migrate_applies_the_migrations_as_the_owner_and_explains_the_app_role():
    with connected_as_owner():
        call_command("migrate", "better_console", "zero", verbosity=0)
    try:
        # The application role owns nothing and may not create tables.
        with pytest.raises(CommandError, match=r"Run it as the role that owns the tables"):
            run("migrate")
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass('better_console_sessions')")
            assert cursor.fetchone() == (None,)
    finally:
        with connected_as_owner():
            code, out, _ = run("migrate")
    assert code == 0 and "Applying better_console." in out
    with console():
        code, out, _ = run("check")
    assert code == 0, out


# --- check ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_check_passes_on_the_migrated_database():
    with console():
        code, out, _ = run("check")
    assert code == 0, out
    assert "✓ table better_console_sessions has all" in out
    assert "✓ table better_console_magic_links has all" in out
    assert "✓ BETTER_CONSOLE['TOKEN_HASH'] is set and well-formed" in out
    assert f"✓ BETTER_CONSOLE['MAGIC_LINK']['ALLOWED_EMAILS']: {ADMIN}" in out
    assert re.search(r"✓ \S+ may SELECT, INSERT, UPDATE, DELETE on better_console_sessions", out)
    assert "✗" not in out and out.rstrip().endswith("checks passed.")


@pytest.mark.django_db
def test_check_reads_the_environment_variables(monkeypatch):
    monkeypatch.setenv("BETTER_CONSOLE_TOKEN_HASH", GOOD_HASH.removeprefix("sha256:"))
    monkeypatch.setenv("BETTER_CONSOLE_ALLOWED_EMAILS", "ops@example.com")
    with override_settings(BETTER_CONSOLE={"MAGIC_LINK": {}}):
        code, out, _ = run("check")
    assert code == 0, out
    assert "✓ BETTER_CONSOLE_TOKEN_HASH is set and well-formed" in out
    assert "✓ BETTER_CONSOLE_ALLOWED_EMAILS: ops@example.com" in out


@pytest.mark.django_db
@pytest.mark.parametrize("bad", ["sha256:abc", "md5:" + "0" * 64, "z" * 64])
def test_check_fails_on_a_malformed_token_hash(bad):
    with console(TOKEN_HASH=bad):
        code, out, _ = run("check")
    assert code == 1
    assert "✗ BETTER_CONSOLE['TOKEN_HASH'] is not sha256:<64 hex> or <64 hex>" in out
    assert "1 of " in out and "checks failed." in out


@pytest.mark.django_db
def test_check_fails_without_a_token_hash():
    with override_settings(BETTER_CONSOLE={"AUTO_APPROVE": True}):
        code, out, _ = run("check")
    assert code == 1
    assert "✗ TOKEN_HASH is not set: run `manage.py better_console init`" in out


@pytest.mark.django_db
def test_missing_allowed_emails_is_only_a_warning():
    with override_settings(BETTER_CONSOLE={"TOKEN_HASH": GOOD_HASH, "AUTO_APPROVE": True}):
        code, out, _ = run("check")
    assert code == 0, out
    assert "! ALLOWED_EMAILS is not set (BETTER_CONSOLE_ALLOWED_EMAILS)" in out


@pytest.mark.django_db
def test_check_fails_when_a_table_is_missing(monkeypatch):
    monkeypatch.setattr(MagicLink._meta, "db_table", "better_console_magic_links_gone")
    with console():
        code, out, _ = run("check")
    assert code == 1
    assert '✗ table "better_console_magic_links_gone" not found (schema public)' in out
    assert "✓ table better_console_sessions has all" in out
    assert "Create the tables as the role that owns them" in out


@pytest.mark.django_db
def test_check_reports_the_apps_system_checks():
    def failing(app_configs=None, **kwargs):
        return [
            checks.Error("broken on purpose", hint="mend it", id="better_console.E900"),
            checks.Warning("worth a look", id="better_console.W900"),
        ]

    checks.register(failing, "better_console")
    try:
        with console():
            code, out, _ = run("check")
    finally:
        checks.registry.registry.registered_checks.discard(failing)
    assert code == 1
    assert "✗ better_console.E900: broken on purpose (mend it)" in out
    assert "! better_console.W900: worth a look" in out


@pytest.mark.django_db(transaction=True)
def test_check_fails_when_the_app_role_may_not_write_a_table():
    role = connection.settings_dict["USER"]
    with connected_as_owner(), connection.cursor() as cursor:
        cursor.execute(f'REVOKE DELETE ON better_console_sessions FROM "{role}"')
    try:
        with console():
            code, out, _ = run("check")
    finally:
        with connected_as_owner(), connection.cursor() as cursor:
            cursor.execute(f'GRANT DELETE ON better_console_sessions TO "{role}"')
    assert code == 1
    assert f"✗ {role} may not DELETE on better_console_sessions" in out
    assert "grant the runtime role SELECT, INSERT, UPDATE and DELETE" in out


def test_expected_indexes_come_from_the_models():
    assert commands.expected_indexes(ConsoleSession) == [
        (("session_id",), False),
        (("token_hash",), True),
        (("expires_at",), False),
    ]
    assert (("session_id",), True) in commands.expected_indexes(MagicLink)
