"""Django system checks of better_tenant: settings, tenant models and RLS migrations."""

import uuid

import pytest
from django.core.checks import Error
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import models
from django.db.migrations.loader import MigrationLoader
from django.test import override_settings
from django.test.utils import isolate_apps

from better_tenant import checks
from better_tenant.constraints import TenantRLS
from better_tenant.models import TenantModel
from tests.testapp.models import Comment, Note


def ids(messages):
    return sorted(m.id for m in messages)


def settings_messages(**values):
    with override_settings(BETTER_TENANT=values):
        return checks.check_settings()


# --- settings ------------------------------------------------------------------------------------


def test_the_test_settings_pass():
    assert checks.check_settings() == []
    assert checks.check_tenant_models() == []
    assert checks.check_rls_migrations() == []


def test_settings_must_be_a_dict():
    with override_settings(BETTER_TENANT=["HEADER"]):
        messages = checks.check_settings()
    assert ids(messages) == ["better_tenant.E001"]
    assert isinstance(messages[0], Error)
    assert "must be a dict" in messages[0].msg


def test_unknown_keys_are_named_with_a_suggestion():
    (message,) = settings_messages(HEDAER="X-Tenant", CACHE_ALIAS="default")
    assert message.id == "better_tenant.E002"
    assert "'HEDAER'" in message.msg
    assert "'HEDAER' -> 'HEADER'" in message.hint


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("SUBDOMAIN", "yes"),
        ("HEADER", 42),
        ("MISSING_TENANT_STATUS", "404"),
        ("MISSING_TENANT_STATUS", True),
        ("EXEMPT_PATHS", "/admin/"),
        ("CACHE_TIMEOUT", -1),
        ("HEADER", "  "),
    ],
)
def test_wrong_types_are_errors(key, value):
    messages = settings_messages(**{key: value})
    assert ids(messages) == ["better_tenant.E003"]
    assert f"BETTER_TENANT['{key}']" in messages[0].msg


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("/t/:id/*", "has no ':tenantId' segment"),
        ("t/:tenantId", "does not start with '/'"),
        ("/t/*/:tenantId", "has '*' before its last segment"),
    ],
)
def test_path_pattern_needs_a_tenant_id_segment(pattern, problem):
    (message,) = settings_messages(PATH=pattern)
    assert message.id == "better_tenant.E004"
    assert problem in message.msg
    assert "'/t/:tenantId/*'" in message.hint


def test_a_good_path_pattern_passes():
    assert settings_messages(PATH="/t/:tenantId/*") == []
    assert settings_messages(PATH="/orgs/:tenantId") == []


@pytest.mark.parametrize("status", [200, 302, 600, 399])
def test_missing_tenant_status_must_be_an_error_status(status):
    (message,) = settings_messages(MISSING_TENANT_STATUS=status)
    assert message.id == "better_tenant.E005"
    assert str(status) in message.msg


def test_dotted_paths_must_import_and_be_callable():
    messages = settings_messages(
        CUSTOM_RESOLVER="no.such.module.resolve",
        RESOLVE_TO_ID="better_tenant.sql.SETTING",
        ON_MISSING_TENANT=12,
    )
    assert ids(messages) == ["better_tenant.E006"] * 3
    text = " ".join(m.msg for m in messages)
    assert "'no.such.module.resolve' cannot be imported" in text
    assert "'better_tenant.sql.SETTING' is a str, not a callable" in text
    assert "ON_MISSING_TENANT'] must be a dotted path" in text


def test_callables_and_importable_paths_pass():
    assert settings_messages(CUSTOM_RESOLVER=lambda request: None) == []
    assert settings_messages(RESOLVE_TO_ID="better_tenant.lookup.resolve_to_id") == []


@pytest.mark.parametrize("algorithms", ["HS256", [], [""], ("HS256", None), ["none"]])
def test_jwt_algorithms_must_be_a_list_of_real_algorithms(algorithms):
    (message,) = settings_messages(JWT_ALGORITHMS=algorithms)
    assert message.id == "better_tenant.E007"


def test_unverified_jwt_claim_is_a_warning():
    (message,) = settings_messages(JWT_CLAIM="tenant_id")
    assert message.id == "better_tenant.W005"
    assert settings_messages(JWT_CLAIM="tenant_id", JWT_KEY="secret") == []


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_database_alias_must_exist_and_be_postgresql():
    (message,) = settings_messages(DATABASE="reporting")
    assert message.id == "better_tenant.E008"
    assert "'reporting', which is not in DATABASES" in message.msg
    sqlite = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    with override_settings(DATABASES={"default": sqlite}, BETTER_TENANT={"DATABASE": "default"}):
        (message,) = checks.check_settings()
    assert message.id == "better_tenant.E008"
    assert "needs PostgreSQL" in message.msg


def test_system_role_must_be_a_role_name():
    (message,) = settings_messages(SYSTEM_ROLE="system role; DROP")
    assert message.id == "better_tenant.E009"


def test_cache_alias_must_exist():
    (message,) = settings_messages(CACHE_ALIAS="redis")
    assert message.id == "better_tenant.E010"


def test_paths_must_start_with_a_slash():
    (message,) = settings_messages(EXEMPT_PATHS=["/static/", "admin/"], PATH_PREFIXES=["/api/"])
    assert message.id == "better_tenant.E011"
    assert "'admin/'" in message.msg and "/static/" not in message.msg


def test_middleware_without_any_resolver_is_a_warning():
    (message,) = settings_messages(HEADER=None)
    assert message.id == "better_tenant.W007"


def test_manage_py_check_stops_on_a_bad_setting():
    with (
        override_settings(BETTER_TENANT={"MISSING_TENANT_STATUS": 200}),
        pytest.raises(SystemCheckError, match=r"better_tenant\.E005"),
    ):
        call_command("check")


# --- tenant models -------------------------------------------------------------------------------


@isolate_apps("tests.testapp")
def test_unique_keys_without_the_tenant_are_warnings():
    class Invoice(TenantModel):
        number = models.CharField(max_length=20, unique=True)
        code = models.CharField(max_length=20)
        ref = models.CharField(max_length=20)
        public_id = models.UUIDField(unique=True, default=uuid.uuid4)

        class Meta:
            app_label = "testapp"
            unique_together = [("code", "ref"), ("tenant", "ref")]
            constraints = [
                models.UniqueConstraint(fields=["code"], name="invoice_code"),
                models.UniqueConstraint(fields=["tenant", "code"], name="invoice_tenant_code"),
            ]

    messages = checks.tenant_model_messages(Invoice)
    assert ids(messages) == ["better_tenant.W002"] * 3
    text = " | ".join(m.msg for m in messages)
    assert "field number (unique=True)" in text
    assert "constraint invoice_code (code)" in text
    assert "unique_together (code, ref)" in text
    assert "public_id" not in text and "invoice_tenant_code" not in text


@isolate_apps("tests.testapp")
def test_foreign_key_missing_from_tenant_rls_is_an_error():
    class Folder(TenantModel):
        class Meta:
            app_label = "testapp"

    class Document(TenantModel):
        folder = models.ForeignKey(Folder, on_delete=models.CASCADE)

        class Meta:
            app_label = "testapp"
            constraints = [TenantRLS(name="document_rls")]

    class Page(TenantModel):
        document = models.ForeignKey(Document, on_delete=models.CASCADE)

        class Meta:
            app_label = "testapp"

    (message,) = checks.tenant_model_messages(Document)
    assert message.id == "better_tenant.E012"
    assert "testapp.Document.folder references the tenant model testapp.Folder" in message.msg
    assert "Add 'folder' to TenantRLS(foreign_keys=...)" in message.hint
    # The automatically attached TenantRLS lists every foreign key.
    assert checks.tenant_model_messages(Page) == []


@isolate_apps("tests.testapp")
def test_foreign_key_to_a_non_primary_key_is_an_error():
    class Account(TenantModel):
        code = models.CharField(max_length=20, unique=True)

        class Meta:
            app_label = "testapp"

    class Entry(TenantModel):
        account = models.ForeignKey(Account, to_field="code", on_delete=models.CASCADE)

        class Meta:
            app_label = "testapp"

    messages = checks.tenant_model_messages(Entry)
    assert ids(messages) == ["better_tenant.E012"]
    assert "not its primary key" in messages[0].msg


@isolate_apps("tests.testapp")
def test_join_tables_shared_references_and_unmanaged_models_are_warnings():
    class Tag(TenantModel):
        class Meta:
            app_label = "testapp"

    class Post(TenantModel):
        tags = models.ManyToManyField(Tag)

        class Meta:
            app_label = "testapp"

    class Legacy(TenantModel):
        class Meta:
            app_label = "testapp"
            managed = False

    class Bookmark(models.Model):
        post = models.ForeignKey(Post, on_delete=models.CASCADE)

        class Meta:
            app_label = "testapp"

        def __str__(self):
            return f"bookmark {self.pk}"

    # Its automatic join table gets TenantJoinRLS (W003 is for join tables left without it).
    assert ids(checks.tenant_model_messages(Post)) == []
    (shared,) = checks.shared_reference_messages(Bookmark)
    assert shared.id == "better_tenant.W004"
    assert "testapp.Bookmark.post references the tenant model testapp.Post" in shared.msg
    (message,) = checks.tenant_model_messages(Legacy)
    assert message.id == "better_tenant.W006"
    assert "better_tenant add-table" in message.hint


# --- migrations ----------------------------------------------------------------------------------


@pytest.fixture
def state():
    return MigrationLoader(None, ignore_no_migrations=True).project_state()


def test_migrated_tenant_models_pass(state):
    assert checks.rls_migration_messages([Note, Comment], state) == []


def test_model_without_a_migration_is_reported(state):
    del state.models[("testapp", "note")]
    (message,) = checks.rls_migration_messages([Note], state)
    assert message.id == "better_tenant.W001"
    assert "testapp.Note is a TenantModel with no migration yet" in message.msg
    assert "makemigrations testapp" in message.hint


def test_migration_without_tenant_rls_is_reported(state):
    state.models[("testapp", "note")].options["constraints"] = []
    (message,) = checks.rls_migration_messages([Note], state)
    assert message.id == "better_tenant.W001"
    assert "no migration adds its TenantRLS" in message.msg


def test_stale_tenant_rls_in_migrations_is_reported(state):
    state.models[("testapp", "comment")].options["constraints"] = [
        TenantRLS(name="test_comments_rls")
    ]
    (message,) = checks.rls_migration_messages([Comment], state)
    assert message.id == "better_tenant.W001"
    assert "differs from the model's" in message.msg
