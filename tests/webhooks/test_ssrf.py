"""SSRF guard: every non-global address class is refused, resolved names included."""

from __future__ import annotations

import socket

import pytest

import better_webhooks as webhooks
from better_webhooks import ssrf
from better_webhooks.client import Client
from better_webhooks.db import system_scope
from better_webhooks.exceptions import UnsafeURLError
from better_webhooks.models import WebhookDelivery

REFUSED = [
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "127.0.0.1",
    "0.0.0.0",
    "169.254.169.254",
    "100.64.0.1",
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.2.1",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "ff02::1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "2002:a9fe:a9fe::1",
    "64:ff9b::a9fe:a9fe",
    "64:ff9b:1::1",
    "2001:db8::1",
]


def fake_dns(monkeypatch, *addresses: str) -> None:
    def getaddrinfo(host, port, *args, **kwargs):
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def strict(settings):
    settings.BETTER_WEBHOOKS = {**settings.BETTER_WEBHOOKS, "ALLOW_HTTP_LOCALHOST": False}


@pytest.mark.parametrize("address", REFUSED)
def test_non_global_addresses_are_refused(address):
    import ipaddress

    assert ssrf.refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", REFUSED)
def test_hostname_resolving_to_a_refused_address(monkeypatch, strict, address):
    fake_dns(monkeypatch, address)
    with pytest.raises(UnsafeURLError) as error:
        ssrf.resolve("https://hooks.example.com/in")
    assert "Refusing to deliver to hooks.example.com: it resolves to" in str(error.value)
    assert address.split("%")[0] in str(error.value) or "embedding" in str(error.value)


def test_one_bad_address_among_good_ones_is_refused(monkeypatch, strict):
    fake_dns(monkeypatch, "93.184.216.34", "10.1.2.3")
    with pytest.raises(UnsafeURLError, match=r"10\.1\.2\.3"):
        ssrf.resolve("https://hooks.example.com/in")


def test_global_address_is_vetted_and_pinned(monkeypatch, strict):
    fake_dns(monkeypatch, "93.184.216.34")
    target = ssrf.resolve("https://Hooks.Example.com:8443/in?x=1")
    assert (target.ip, target.host, target.port, target.path) == (
        "93.184.216.34",
        "hooks.example.com",
        8443,
        "/in?x=1",
    )
    assert target.host_header == "hooks.example.com:8443"


def test_https_required(monkeypatch, strict):
    fake_dns(monkeypatch, "93.184.216.34")
    with pytest.raises(UnsafeURLError, match="https"):
        ssrf.resolve("http://hooks.example.com/in")
    for url in ("ftp://example.com/x", "https://user:pw@example.com/", "https:///nohost"):
        with pytest.raises(UnsafeURLError):
            ssrf.validate_url(url)


def test_http_to_loopback_only_with_the_setting(settings):
    settings.BETTER_WEBHOOKS = {**settings.BETTER_WEBHOOKS, "ALLOW_HTTP_LOCALHOST": True}
    ssrf.validate_url("http://localhost:8000/hook")
    assert ssrf.resolve("http://127.0.0.1:9/x").ip == "127.0.0.1"
    settings.BETTER_WEBHOOKS = {**settings.BETTER_WEBHOOKS, "ALLOW_HTTP_LOCALHOST": False}
    with pytest.raises(UnsafeURLError):
        ssrf.validate_url("http://localhost:8000/hook")
    with pytest.raises(UnsafeURLError, match="loopback"):
        ssrf.resolve("http://127.0.0.1:9/x")


def test_allowed_cidrs_admit_internal_networks(monkeypatch, settings):
    settings.BETTER_WEBHOOKS = {
        **settings.BETTER_WEBHOOKS,
        "ALLOW_HTTP_LOCALHOST": False,
        "ALLOWED_CIDRS": ["10.20.0.0/16"],
    }
    fake_dns(monkeypatch, "10.20.1.5")
    assert ssrf.resolve("https://internal.corp/hook").ip == "10.20.1.5"
    fake_dns(monkeypatch, "10.21.1.5")
    with pytest.raises(UnsafeURLError):
        ssrf.resolve("https://internal.corp/hook")


def test_create_endpoint_refuses_literal_private_urls(db, strict):
    with pytest.raises(UnsafeURLError):
        webhooks.create_endpoint("https://169.254.169.254/latest/meta-data", ["ping"])
    with pytest.raises(UnsafeURLError):
        webhooks.create_endpoint("http://example.com/hook", ["ping"])


def test_delivery_to_a_name_resolving_privately_is_refused(db, monkeypatch, receiver, strict):
    from better_webhooks.worker import Worker

    _endpoint, _ = webhooks.create_endpoint("https://rebind.example.com/hook", ["ping"])
    fake_dns(monkeypatch, "127.0.0.1")
    webhooks.send("ping", {"n": 1})
    worker = Worker(concurrency=1)
    try:
        worker.run_once()
    finally:
        worker.close()
    with system_scope():
        row = WebhookDelivery.objects.get()
    assert row.status == "pending" and "loopback" in row.last_error
    assert receiver.requests == []


def test_redirect_to_a_private_address_is_not_followed(receiver):
    hits = []
    receiver.answer(302, {"Location": "http://169.254.169.254/latest/meta-data"})
    response = Client().post(receiver.url(), b"{}", {"Content-Type": "application/json"})
    hits.extend(receiver.requests)
    assert response.status == 302 and len(hits) == 1


def test_connection_goes_to_the_vetted_address_with_the_original_host(monkeypatch, receiver):
    # The name resolves to loopback once; the request carries the name in Host.
    fake_dns(monkeypatch, "127.0.0.1")
    response = Client().post(f"http://hooks.localtest:{receiver.port}/hook", b"{}", {"X-Test": "1"})
    assert response.status == 200
    assert receiver.requests[0].headers["Host"] == f"hooks.localtest:{receiver.port}"


def test_https_connects_to_the_vetted_address_with_sni_and_verified_name(
    monkeypatch, settings, tmp_path
):
    import datetime
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hooks.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("hooks.test")]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    seen = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            seen["host"] = self.headers["Host"]
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)

    def remember_sni(sock, server_name, ctx):
        seen.setdefault("sni", server_name)

    context.sni_callback = remember_sni
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    settings.BETTER_WEBHOOKS = {**settings.BETTER_WEBHOOKS, "CA_BUNDLE": str(cert_file)}
    fake_dns(monkeypatch, "127.0.0.1")
    port = server.server_address[1]
    try:
        response = Client().post(f"https://hooks.test:{port}/in", b"{}", {})
        assert response.status == 200, response.error
        assert seen == {"sni": "hooks.test", "host": f"hooks.test:{port}"}
        # A name the certificate does not cover fails verification.
        wrong = Client().post(f"https://other.test:{port}/in", b"{}", {})
        assert wrong.status is None and wrong.error
    finally:
        server.shutdown()
        server.server_close()


# Spellings a resolver reads as a loopback or private address, and names that never reach a
# public host: refused when the endpoint is saved, as deliveries would refuse them.
LOOPBACK_SPELLINGS = [
    "https://127.1/",
    "https://2130706433/",
    "https://0x7f000001/",
    "https://017700000001/",
    "https://0x7f.0.0.1/",
    "https://0177.0.0.1/",
    "https://127.0.0.1./",
    "https://0/",
    "https://[::ffff:127.0.0.1]/",
    "https://[fe80::1%25eth0]/",
    "https://localhost/",
    "https://LOCALHOST./",
    "https://api.localhost/",
]
SPECIAL_NAMES = [
    "https://hooks.invalid/",
    "https://printer.local/",
    "https://nas.home.arpa/",
    "https://metadata.google.internal/",
]
PRIVATE_SPELLINGS = ["https://10.1/", "https://167772161/", "https://0xa9fea9fe/"]


@pytest.mark.parametrize("url", LOOPBACK_SPELLINGS + SPECIAL_NAMES + PRIVATE_SPELLINGS)
def test_every_spelling_of_a_local_address_is_refused_at_creation(db, strict, url):
    with pytest.raises(UnsafeURLError):
        ssrf.validate_url(url)
    with pytest.raises(UnsafeURLError):
        webhooks.create_endpoint(url, ["ping"])


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("10.0.258", "10.0.1.2"),
        ("93.184.216.34.", "93.184.216.34"),
        ("0", "0.0.0.0"),
    ],
)
def test_ipv4_spellings_read_as_the_resolver_reads_them(host, address):
    assert str(ssrf.ipv4_literal(host)) == address
    # The C library agrees: this is the address a delivery would connect to.
    assert socket.inet_ntoa(socket.inet_aton(host.rstrip("."))) == address


@pytest.mark.parametrize(
    "host", ["example.com", "1e100.net", "123.com", "1.2.3.4.5", "08", "0x", "256.1.1.1.", "a.b"]
)
def test_names_that_only_look_numeric_stay_names(host):
    assert ssrf.ipv4_literal(host) is None


def test_public_addresses_in_other_spellings_are_accepted(strict):
    ssrf.validate_url("https://1572395042/")  # 93.184.216.34
    ssrf.validate_url("https://hooks.example.com/")


def test_localhost_names_are_allowed_with_the_development_setting(settings):
    settings.BETTER_WEBHOOKS = {**settings.BETTER_WEBHOOKS, "ALLOW_HTTP_LOCALHOST": True}
    ssrf.validate_url("https://localhost/")
    ssrf.validate_url("http://api.localhost:8000/")
    ssrf.validate_url("https://127.1/")
    with pytest.raises(UnsafeURLError, match="special-use"):
        ssrf.validate_url("https://hooks.invalid/")
