"""SSRF guard: only global addresses are delivered to, and the vetted address is the one used.

``resolve(url)`` resolves the host once and refuses the URL when any of its addresses is not a
global unicast address: private, loopback, link-local (169.254.169.254 included), CGNAT
(100.64.0.0/10), unspecified, multicast, reserved, documentation, and IPv6 forms that embed
such an IPv4 address (v4-mapped, 6to4, NAT64, Teredo). The client then connects to the returned
address and sends the host name only in ``Host`` and TLS SNI, so a DNS answer that changes
between check and connect (rebinding) cannot move the request. Plain http is refused unless
``ALLOW_HTTP_LOCALHOST`` allows it to loopback; ``ALLOWED_CIDRS`` admits listed networks.

``validate_url(url)`` applies the same rules when an endpoint is saved, without resolving: to a
host that is an address in any spelling a resolver accepts (``127.1``, ``2130706433``,
``0x7f000001``, ``017700000001``) and to the special-use names (``localhost``, ``.invalid``,
``.local``, ``.home.arpa``, ``.internal``), so such an endpoint is never shown as active.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from better_webhooks.conf import webhook_settings
from better_webhooks.exceptions import ConfigurationError, UnsafeURLError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


@dataclass(frozen=True)
class Target:
    """A vetted destination: connect to ``ip``:``port``, name ``host`` in Host and SNI."""

    scheme: str
    host: str
    port: int
    ip: str
    path: str

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


def allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks = []
    for value in webhook_settings.raw("ALLOWED_CIDRS") or []:
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError as exc:
            raise ConfigurationError(
                f"BETTER_WEBHOOKS['ALLOWED_CIDRS'] has {value!r}, which is not a network such "
                "as '10.1.0.0/16'."
            ) from exc
    return networks


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal(address: IPAddress) -> str | None:
    """Why ``address`` may not be delivered to, or None when it is a global unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in _NAT64_LOCAL:
            return "a local-use NAT64 address"
        embedded = _embedded_v4(address)
        if embedded is not None:
            inner = refusal(embedded)
            return f"an IPv6 address embedding {embedded} ({inner})" if inner else None
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (cloud metadata lives here)"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "a carrier-grade NAT address (100.64.0.0/10)"
    if address.is_private:
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "not a global address"
    return None


def _parse(url: str) -> tuple[str, str, int, str]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURLError(f"{url!r} is not a valid URL ({exc}).") from exc
    scheme = (parts.scheme or "").lower()
    if scheme not in ("http", "https"):
        raise UnsafeURLError(f"Webhook URLs must use https; {url!r} uses {scheme or 'no scheme'}.")
    if not parts.hostname:
        raise UnsafeURLError(f"{url!r} has no host.")
    if parts.username or parts.password:
        raise UnsafeURLError("Webhook URLs may not carry credentials (user:password@host).")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80), path


def _check_address(
    address: IPAddress, scheme: str, host: str, networks: list, allow_loopback: bool
) -> None:
    if any(address in network for network in networks):
        return
    if allow_loopback and address.is_loopback:
        return
    reason = refusal(address)
    if reason:
        raise UnsafeURLError(
            f"Refusing to deliver to {host}: it resolves to {address}, {reason}. Webhooks go "
            "only to public addresses (see BETTER_WEBHOOKS['ALLOWED_CIDRS'] for internal ones)."
        )
    if scheme == "http":
        raise UnsafeURLError(
            f"Webhook URLs must use https; http://{host} is refused (plain http is allowed only "
            "to localhost with BETTER_WEBHOOKS['ALLOW_HTTP_LOCALHOST'])."
        )


def _ipv4_part(text: str) -> int | None:
    """One part of a classic IPv4 spelling: decimal, ``0x`` hexadecimal or ``0`` octal."""
    if text[:2] in ("0x", "0X"):
        digits, base = text[2:], 16
    elif len(text) > 1 and text.startswith("0"):
        digits, base = text[1:], 8
    else:
        digits, base = text, 10
    if not digits:
        return None
    try:
        return int(digits, base) if digits.isalnum() and digits.isascii() else None
    except ValueError:
        return None


def ipv4_literal(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a resolver reads ``host`` as, in any of the spellings ``inet_aton`` and
    URL parsers accept (``127.1``, ``2130706433``, ``0x7f000001``, ``017700000001``,
    ``0x7f.0.0.1``, a trailing dot), or None when ``host`` is a name."""
    parts = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers = [_ipv4_part(part) for part in parts]
    if any(number is None for number in numbers):
        return None
    *leading, last = [n for n in numbers if n is not None]
    if any(n > 255 for n in leading) or last >= 256 ** (5 - len(parts)):
        return None
    value = last
    for position, number in enumerate(leading):
        value += number << (8 * (3 - position))
    return ipaddress.IPv4Address(value)


def _address_literal(host: str) -> IPAddress | None:
    """The address ``host`` spells (IPv6 with or without a zone, IPv4 in any spelling)."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return ipv4_literal(host)


# Names that never reach a public host (RFC 6761, RFC 6762, RFC 8375 and ICANN's .internal):
# the name, and every name under it.
_LOOPBACK_NAMES = ("localhost",)
_LOCAL_NAMES = ("invalid", "local", "home.arpa", "internal")


def _special_name(host: str) -> str | None:
    """Why a name is refused as a destination, or None; "loopback" for localhost names."""
    name = host.rstrip(".")
    for suffix in _LOOPBACK_NAMES:
        if name == suffix or name.endswith("." + suffix):
            return "loopback"
    for suffix in _LOCAL_NAMES:
        if name == suffix or name.endswith("." + suffix):
            return f"a special-use name (.{suffix}) that no public host answers to"
    return None


def validate_url(url: str) -> None:
    """Static checks when an endpoint is saved: scheme, credentials, every literal address
    spelling and the special-use names, with the rules deliveries apply to resolved addresses."""
    scheme, host, _port, _path = _parse(url)
    allow_loopback = bool(webhook_settings.raw("ALLOW_HTTP_LOCALHOST"))
    literal = _address_literal(host)
    if literal is not None:
        _check_address(literal, scheme, host, allowed_networks(), allow_loopback)
        return
    special = _special_name(host)
    if special == "loopback":
        if not allow_loopback:
            raise UnsafeURLError(
                f"Refusing {host}: it names the loopback interface. Webhooks go only to public "
                "hosts (BETTER_WEBHOOKS['ALLOW_HTTP_LOCALHOST'] admits localhost in development)."
            )
        return
    if special is not None:
        raise UnsafeURLError(f"Refusing {host}: it is {special}.")
    if scheme == "http":
        raise UnsafeURLError(
            f"Webhook URLs must use https; {url!r} is refused (plain http is allowed only to "
            "localhost with BETTER_WEBHOOKS['ALLOW_HTTP_LOCALHOST'])."
        )


def resolve(url: str) -> Target:
    """Resolve and vet the URL's host: the address to connect to, or UnsafeURLError."""
    scheme, host, port, path = _parse(url)
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeURLError(f"Cannot resolve {host}: {exc}.") from exc
    addresses: list[IPAddress] = []
    for info in infos:
        # An AF_INET or AF_INET6 address, whose host is text (str() only tells the checker so).
        text = str(info[4][0]).split("%", 1)[0]
        address = ipaddress.ip_address(text)
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UnsafeURLError(f"{host} resolves to no address.")
    networks = allowed_networks()
    allow_loopback = bool(webhook_settings.raw("ALLOW_HTTP_LOCALHOST"))
    for address in addresses:
        # Every address must pass: a client could otherwise be steered to the bad one.
        _check_address(address, scheme, host, networks, allow_loopback)
    return Target(scheme, host.strip("[]"), port, str(addresses[0]), path)
