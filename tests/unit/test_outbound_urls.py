"""SSRF: which addresses a webhook URL may point at (SPEC §5.4), IPv6 and embedded IPv4 included."""

from __future__ import annotations

import ipaddress

import pytest

from app.adapters.outbound_urls import UnsafeUrl, check_url, embedded_ipv4, is_public

NOT_PUBLIC = [
    "127.0.0.1",  # loopback
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",  # RFC 1918
    "100.64.0.1",  # carrier-grade NAT
    "169.254.169.254",  # link-local: the cloud metadata service
    "0.0.0.0",
    "224.0.0.1",
    "239.255.255.250",  # multicast
    "192.0.2.1",  # documentation
    "255.255.255.255",
    "::1",
    "::",
    "fe80::1",  # link-local
    "fc00::1",  # unique-local
    "ff02::1",  # multicast
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "::ffff:10.0.0.1",
    "2002:7f00:1::",  # 6to4 wrapping 127.0.0.1
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 wrapping 169.254.169.254
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "::ffff:8.8.8.8", "64:ff9b::808:808"]


@pytest.mark.parametrize("text", NOT_PUBLIC)
def test_non_public_addresses_are_refused(text: str):
    assert not is_public(ipaddress.ip_address(text))


@pytest.mark.parametrize("text", PUBLIC)
def test_public_addresses_pass(text: str):
    assert is_public(ipaddress.ip_address(text))


def test_embedded_ipv4_forms_are_unwrapped():
    assert str(embedded_ipv4(ipaddress.ip_address("::ffff:127.0.0.1"))) == "127.0.0.1"
    assert str(embedded_ipv4(ipaddress.ip_address("64:ff9b::a9fe:a9fe"))) == "169.254.169.254"
    assert embedded_ipv4(ipaddress.ip_address("2001:4860::1")) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://[::1]:8080/",
        "http://[::ffff:169.254.169.254]/latest/meta-data",
        "http://localhost/",
        "http://0x7f000001/",  # 127.0.0.1 spelled as a number
        "http://2130706433/",  # and as a decimal
    ],
)
def test_urls_whose_host_is_not_public_are_refused(url: str):
    with pytest.raises(UnsafeUrl, match="non-public"):
        check_url(url)


def test_private_urls_pass_when_allowed():
    assert check_url("http://127.0.0.1:9/hook", allow_private=True).addresses == ("127.0.0.1",)


@pytest.mark.parametrize(
    "url",
    ["ftp://8.8.8.8/", "file:///etc/passwd", "gopher://8.8.8.8/", "http://user:pw@8.8.8.8/", "http:///x"],
)
def test_only_plain_http_urls_without_credentials(url: str):
    with pytest.raises(UnsafeUrl):
        check_url(url, allow_private=True)


def test_production_takes_https_only():
    with pytest.raises(UnsafeUrl, match="https://"):
        check_url("http://8.8.8.8/", require_https=True)
    assert check_url("https://8.8.8.8/", require_https=True).port == 443


def test_a_name_that_does_not_resolve_is_refused():
    with pytest.raises(UnsafeUrl, match="does not resolve"):
        check_url("http://no-such-host.invalid/")
