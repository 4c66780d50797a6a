"""Tenant, scopes, require_tenant, key_for, to_headers/from_headers, errors."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import pickle
import re
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

import opskit.tenancy as tenancy
from opskit import OpskitError
from opskit.tenancy import (
    DEFAULT_ID_PATTERN,
    InvalidTenant,
    NoTenant,
    Tenant,
    TenantError,
    TenantLookupError,
    UnknownTenant,
    current_tenant,
    from_headers,
    get_tenant,
    key_for,
    require_tenant,
    set_id_pattern,
    tenant_scope,
    to_headers,
)

valid_ids = st.from_regex(re.compile(DEFAULT_ID_PATTERN), fullmatch=True)


def test_public_api_is_pinned() -> None:
    assert tenancy.__all__[:17] == [
        "Tenant", "current_tenant", "get_tenant", "tenant_scope", "require_tenant", "resolvers",
        "TenantError", "NoTenant", "UnknownTenant", "InvalidTenant", "TenantLookupError",
        "to_headers", "from_headers", "copy_to_thread", "TenantThreadPoolExecutor", "key_for",
        "TenantLogFilter",
    ]  # fmt: skip
    for name in tenancy.__all__:
        assert hasattr(tenancy, name), name


def test_error_hierarchy() -> None:
    for cls in (NoTenant, UnknownTenant, InvalidTenant, TenantLookupError):
        assert issubclass(cls, TenantError)
    assert issubclass(TenantError, OpskitError)
    assert issubclass(InvalidTenant, ValueError)
    assert issubclass(NoTenant, LookupError)
    for err in (NoTenant("f"), InvalidTenant("empty"), UnknownTenant("acme"),
                TenantLookupError("timeout", "slow")):  # fmt: skip
        again = pickle.loads(pickle.dumps(err))  # noqa: S301 - our own bytes
        assert type(again) is type(err) and str(again) == str(err)


# -- Tenant -------------------------------------------------------------------------------


def test_tenant_attributes_equality_hash() -> None:
    t = Tenant("acme", plan="pro", schema="tenant_acme")
    assert t.id == "acme" and t.plan == "pro" and t.schema == "tenant_acme"
    assert t == Tenant("acme", plan="pro", schema="tenant_acme")
    assert t != Tenant("acme", plan="free", schema="tenant_acme")
    assert t != Tenant("acme")
    assert t != "acme"
    assert hash(t) == hash("acme") == hash(Tenant("acme", plan="other"))
    assert dict(t.attributes) == {"plan": "pro", "schema": "tenant_acme"}
    with pytest.raises(AttributeError, match="region"):
        _ = t.region
    assert not hasattr(t, "region")
    assert getattr(t, "region", "eu") == "eu"


def test_tenant_is_frozen() -> None:
    t = Tenant("acme", plan="pro")
    with pytest.raises(AttributeError):
        t.plan = "free"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        t.id = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del t.plan
    with pytest.raises(TypeError):
        t.attributes["plan"] = "free"  # type: ignore[index]
    assert t.replace(plan="free") == Tenant("acme", plan="free")
    assert t.plan == "pro"


def test_tenant_repr_hides_attribute_values() -> None:
    t = Tenant("acme", api_key="sk_live_secret")
    assert "sk_live_secret" not in repr(t)
    assert "api_key" in repr(t) and "acme" in repr(t)


def test_tenant_pickles_and_reserved_names() -> None:
    t = Tenant("acme", plan="pro", limits=[1, 2])
    assert pickle.loads(pickle.dumps(t)) == t  # noqa: S301 - our own bytes
    for name in ("attributes", "replace", "_x"):
        with pytest.raises(TypeError, match="reserved"):
            Tenant("acme", **{name: 1})


@pytest.mark.parametrize(
    "bad",
    ["", "-acme", ".acme", "a" * 65, "ac me", "acme\n", "acme\r\nX-Evil: 1", "ac:me", "acmé",
     "a/b", "a,b", None, 42, b"acme"],
)  # fmt: skip
def test_malformed_ids_raise_invalid_tenant(bad: object) -> None:
    with pytest.raises(InvalidTenant) as info:
        Tenant(bad)  # type: ignore[arg-type]
    if isinstance(bad, str) and bad:
        assert bad not in str(info.value)  # the value is never echoed
    if bad is not None:  # None is a scope with no tenant
        with pytest.raises(InvalidTenant):
            tenant_scope(bad)  # type: ignore[arg-type]


@given(valid_ids)
def test_every_id_of_the_pattern_is_accepted_and_round_trips(tenant_id: str) -> None:
    with tenant_scope(tenant_id):
        headers = to_headers()
        assert headers == {"x-opskit-tenant": tenant_id}
        assert key_for("k") == f"tenant:{tenant_id}:k"
    with from_headers(headers) as t:
        assert t == Tenant(tenant_id) and get_tenant() == t


@given(st.text(max_size=80))
def test_validation_is_total(text: str) -> None:
    """Any string either is a Tenant id or raises InvalidTenant; nothing else."""
    try:
        t = Tenant(text)
    except InvalidTenant:
        assert re.fullmatch(DEFAULT_ID_PATTERN, text) is None
    else:
        assert t.id == text and re.fullmatch(DEFAULT_ID_PATTERN, text)


def test_set_id_pattern_widens_and_restores() -> None:
    with pytest.raises(InvalidTenant):
        Tenant("org@acme")
    previous = set_id_pattern(r"[a-z]+@[a-z]+")
    try:
        assert Tenant("org@acme").id == "org@acme"
        with pytest.raises(InvalidTenant):
            Tenant("acme")  # the default pattern no longer applies
        set_id_pattern(r".*")
        with pytest.raises(InvalidTenant):
            Tenant("a\x00b")  # control characters are refused whatever the pattern
    finally:
        set_id_pattern(previous)
    assert Tenant("acme").id == "acme"


# -- scopes -------------------------------------------------------------------------------


def test_scope_sets_nests_and_restores() -> None:
    assert current_tenant() is None
    with pytest.raises(NoTenant):
        get_tenant()
    with tenant_scope("acme") as a:
        assert a == Tenant("acme") and get_tenant() is a
        with tenant_scope(Tenant("globex", plan="pro")) as g:
            assert current_tenant() is g and g is not None and g.plan == "pro"
            with tenant_scope(None) as none:
                assert none is None and current_tenant() is None
            assert current_tenant() is g
        assert current_tenant() is a
    assert current_tenant() is None


def test_scope_restores_on_exception() -> None:
    with pytest.raises(RuntimeError), tenant_scope("acme"):
        raise RuntimeError("boom")
    assert current_tenant() is None


def test_scope_object_reentered() -> None:
    scope = tenant_scope("acme")
    with scope:
        with tenant_scope("globex"), scope:
            assert get_tenant().id == "acme"
        assert get_tenant().id == "acme"
    assert current_tenant() is None
    with scope:
        assert get_tenant().id == "acme"
    assert current_tenant() is None


@given(st.lists(st.one_of(st.none(), valid_ids), max_size=8))
def test_nested_scopes_restore_in_order(ids: list[str | None]) -> None:
    def nest(rest: list[str | None]) -> None:
        if not rest:
            return
        before = current_tenant()
        with tenant_scope(rest[0]):
            assert current_tenant() == (None if rest[0] is None else Tenant(rest[0]))
            assert structlog.contextvars.get_contextvars().get("tenant_id") == rest[0]
            nest(rest[1:])
        assert current_tenant() == before

    nest(ids)
    assert current_tenant() is None
    assert "tenant_id" not in structlog.contextvars.get_contextvars()


async def test_async_with_and_task_inheritance() -> None:
    async with tenant_scope("acme") as t:
        assert get_tenant() is t

        async def child() -> str:
            return get_tenant().id

        assert await asyncio.create_task(child()) == "acme"
        assert await asyncio.to_thread(lambda: get_tenant().id) == "acme"
    assert current_tenant() is None


async def test_concurrent_tasks_keep_their_own_tenant() -> None:
    async def worker(tenant_id: str) -> list[str]:
        seen = []
        async with tenant_scope(tenant_id):
            for _ in range(20):
                await asyncio.sleep(0)
                seen.append(get_tenant().id)
        return seen

    ids = [f"t{i}" for i in range(30)]
    results = await asyncio.gather(*(worker(i) for i in ids))
    assert all(set(seen) == {i} for seen, i in zip(results, ids, strict=True))


def test_exit_in_another_context_never_raises_value_error() -> None:
    """A scope entered in one context and left in another (a streamed body): the
    saved value is set back instead of ContextVar.reset raising ValueError."""
    scope = tenant_scope("acme")
    entered = contextvars.copy_context()
    entered.run(scope.__enter__)
    assert entered.run(current_tenant) == Tenant("acme")
    other = contextvars.copy_context()
    other.run(tenant_scope("globex").__enter__)
    other.run(scope.__exit__, None, None, None)  # no ValueError
    assert other.run(current_tenant) is None  # restored to what was saved on entry
    assert current_tenant() is None  # this context never saw a tenant


def test_scope_in_a_generator_left_in_another_context() -> None:
    def body() -> Iterator[Tenant | None]:
        with tenant_scope("acme"):
            yield current_tenant()
            yield current_tenant()

    gen = body()
    assert contextvars.copy_context().run(next, gen) == Tenant("acme")
    # Each step in a fresh copy (as a thread pool iterates a sync body): the set
    # made in the first step's context is not seen in the second's.
    assert contextvars.copy_context().run(next, gen) is None
    contextvars.copy_context().run(gen.close)  # leaves the scope in a third context
    assert current_tenant() is None


# -- require_tenant, key_for, headers -------------------------------------------------------


def test_require_tenant_sync() -> None:
    @require_tenant
    def charge(amount: int) -> str:
        """Charge the tenant."""
        return f"{get_tenant().id}:{amount}"

    assert charge.__name__ == "charge" and charge.__doc__ == "Charge the tenant."
    with pytest.raises(NoTenant, match="charge"):
        charge(5)
    with tenant_scope(None), pytest.raises(NoTenant):
        charge(5)
    with tenant_scope("acme"):
        assert charge(5) == "acme:5"


async def test_require_tenant_async_stays_a_coroutine_function() -> None:
    @require_tenant
    async def charge(amount: int) -> str:
        await asyncio.sleep(0)
        return f"{get_tenant().id}:{amount}"

    assert inspect.iscoroutinefunction(charge)
    with pytest.raises(NoTenant):
        await charge(1)
    async with tenant_scope("acme"):
        assert await charge(1) == "acme:1"


def test_key_for() -> None:
    with pytest.raises(NoTenant):
        key_for("rl", "login")
    with tenant_scope("acme"):
        assert key_for("rl", "login") == "tenant:acme:rl:login"
        assert key_for() == "tenant:acme"
        assert key_for("user", 42) == "tenant:acme:user:42"


def test_to_headers_outside_a_scope_is_empty() -> None:
    assert to_headers() == {}
    with tenant_scope(None):
        assert to_headers() == {}
    with tenant_scope("acme"):
        assert to_headers("X-Tenant-ID") == {"X-Tenant-ID": "acme"}


@pytest.mark.parametrize(
    "headers",
    [{"X-OpsKit-Tenant": "acme"}, [("x-opskit-tenant", "acme")], [(b"X-OPSKIT-TENANT", b"acme")],
     {"x-opskit-tenant": "acme", "other": 1}, [("x-opskit-tenant", "acme")] * 2],
)  # fmt: skip
def test_from_headers_shapes(headers: object) -> None:
    with from_headers(headers) as t:
        assert t == Tenant("acme") and get_tenant().id == "acme"
    assert current_tenant() is None


def test_from_headers_without_the_header_clears_an_outer_tenant() -> None:
    with tenant_scope("acme"):
        with from_headers({"other": "x"}) as t:
            assert t is None and current_tenant() is None
        with from_headers(None):
            assert current_tenant() is None
        assert get_tenant().id == "acme"


@pytest.mark.parametrize(
    "headers",
    [{"x-opskit-tenant": "bad id"}, {"x-opskit-tenant": ""}, {"x-opskit-tenant": 7},
     {"x-opskit-tenant": "\x85acme"}, {"x-opskit-tenant": "acme\x1f"},
     [("x-opskit-tenant", "acme"), ("X-Opskit-Tenant", "globex")], ["not-a-pair"]],
)  # fmt: skip
def test_from_headers_malformed(headers: object) -> None:
    with pytest.raises(InvalidTenant):
        from_headers(headers)
    assert current_tenant() is None


def test_scopes_by_id_follow_a_changed_pattern() -> None:
    with tenant_scope("acme") as first:
        pass
    with tenant_scope("acme") as again:
        assert again is first  # one shared, immutable Tenant per id
    previous = set_id_pattern(r"t-[0-9]+")
    try:
        with pytest.raises(InvalidTenant):
            tenant_scope("acme")  # validated again under the new pattern
        with pytest.raises(InvalidTenant):
            from_headers({"x-opskit-tenant": "acme"})
    finally:
        set_id_pattern(previous)
    assert tenant_scope("acme").tenant == Tenant("acme")
