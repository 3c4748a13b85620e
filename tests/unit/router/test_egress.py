"""Base URLs an admin may set: private, loopback, link-local and odd spellings refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.router.egress import EgressPolicy, EgressRefused, allow_private

HOSTILE = [
    "http://127.0.0.1:8080/v1",
    "http://localhost/v1",
    "http://[::1]/v1",
    "http://10.1.2.3/v1",
    "http://172.16.0.1/v1",
    "http://172.31.255.254/v1",
    "http://192.168.1.1/v1",
    "http://169.254.169.254/latest/meta-data",
    "http://0.0.0.0/v1",
    "http://[::ffff:127.0.0.1]/v1",
    "http://[::ffff:169.254.169.254]/v1",
    "http://2130706433/v1",        # 127.0.0.1 in decimal
    "http://0x7f000001/v1",        # 127.0.0.1 in hex
    "http://0x7f.1/v1",            # 127.0.0.1 in short hex form
    "http://017700000001/v1",      # 127.0.0.1 in octal
    "http://[fe80::1]/v1",
    "http://[fc00::1]/v1",
    "http://100.64.0.1/v1",        # carrier-grade NAT
    "http://[2002:7f00:1::]/v1",   # 6to4 wrapping 127.0.0.1
]


async def _public(host: str) -> list[str]:
    return {"api.example.com": ["93.184.216.34"], "rebind.example.com": ["10.0.0.7"]}[host]


@pytest.mark.parametrize("url", HOSTILE)
async def test_private_addresses_are_refused(url: str) -> None:
    with pytest.raises(EgressRefused) as caught:
        await EgressPolicy(allow_private=False).check(url, "base_url")
    assert caught.value.field == "base_url"
    assert str(caught.value).startswith("base_url: ")


@pytest.mark.parametrize("url", HOSTILE)
async def test_the_allow_switch_lets_them_through(url: str) -> None:
    await EgressPolicy(allow_private=True).check(url)


async def test_public_hosts_pass_and_names_resolving_private_do_not() -> None:
    policy = EgressPolicy(allow_private=False, resolve=_public)
    await policy.check("https://api.example.com/v1")
    await policy.check("https://93.184.216.34/v1")
    with pytest.raises(EgressRefused, match="rebind.example.com"):
        await policy.check("https://rebind.example.com/v1")


@pytest.mark.parametrize("url", ["ftp://api.example.com", "file:///etc/passwd",
                                 "https://user:pw@api.example.com/v1", "https:///v1",
                                 "gopher://127.0.0.1"])
async def test_other_schemes_credentials_and_no_host_are_refused_even_when_allowed(url: str) -> None:
    with pytest.raises(EgressRefused):
        await EgressPolicy(allow_private=True).check(url)


async def test_unresolvable_hosts_are_refused() -> None:
    async def nowhere(host: str) -> list[str]:
        raise OSError("no such host")

    with pytest.raises(EgressRefused, match="does not resolve"):
        await EgressPolicy(allow_private=False, resolve=nowhere).check("https://nowhere.invalid")


def test_allow_switch_from_env_or_file(tmp_path: Path) -> None:
    config = tmp_path / "apirelay.yaml"
    config.write_text("channels: []\n", encoding="utf-8")
    assert not allow_private({}, config)
    assert allow_private({"APIRELAY_ALLOW_PRIVATE_UPSTREAMS": "1"}, config)
    config.write_text("allow_private_upstreams: true\n", encoding="utf-8")
    assert allow_private({}, config)
    config.write_text("allow_private_upstreams: 'yes'\n", encoding="utf-8")
    assert not allow_private({}, config)  # only a real boolean counts
