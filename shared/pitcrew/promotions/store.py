"""Promotions and environments in ``PROMOTIONS_TABLE`` (pk/sk, TTL ``expires_at``).

Items (``TRIGGER#<repo>`` items belong to ``pitcrew.fixes.triggers``)::

    pk "PROMOTIONS"            sk <id>                  a promotion (ids sort by creation time)
    pk "LOCK#<app>#<env>"      sk "LOCK"                who promotes the app into the env
    pk "VERIFIED#<app>"        sk "<env>#<version>"     a version verified in an environment
    pk "ENV#<env>"             sk "APP#<app>"           current, previous and stable version
    pk "ENV#<env>"             sk "HEALTH"              the scheduled health check's last result
    pk "TOKEN#<id>"            sk <purpose>             a waiting task's token (never shown)
    pk "WAITING"               sk "<id>#<purpose>"      which tasks wait (for their heartbeats)
    pk "PULL#<repo>#<number>"  sk "PULL"                the promotion a pull request belongs to

Writes that race (locks, a promotion changed by its execution and by an approval) are
conditional: a promotion carries a ``revision`` and ``change`` retries on a conflict.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, field
from datetime import UTC, datetime
from typing import Any

from pitcrew.errors import ConflictError, NotFoundError
from pitcrew.records import frozen, mutable
from pitcrew.stores import Table, table_name

TABLE_ENV = "PROMOTIONS_TABLE"
PROMOTIONS_PK = "PROMOTIONS"
WAITING_PK = "WAITING"
KEEP_S = 180 * 24 * 3600
TOKEN_KEEP_S = 30 * 24 * 3600
RUNNING = "running"
AWAITING_APPROVAL = "awaiting_approval"
ENDED = ("succeeded", "failed", "refused", "rolled_back")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_ID = re.compile(f"[{_CROCKFORD}]{{26}}")


def new_id(now: float | None = None) -> str:
    """A ULID: 48 bits of milliseconds then 80 random bits, Crockford base32 (sorts by time)."""
    value = (int((time.time() if now is None else now) * 1000) << 80) | secrets.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def id_floor(moment: float) -> str:
    """The smallest id ``new_id`` makes at ``moment``: ids at or after it sort after it."""
    value = int(moment * 1000) << 80
    return "".join(_CROCKFORD[(value >> (5 * n)) & 31] for n in reversed(range(26)))


def iso(moment: float) -> str:
    text = datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def epoch(text: str | None) -> float | None:
    """The moment ``iso`` wrote (None for no text, or text that is no ISO time)."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@mutable
class Promotion:
    """One promotion of ``version`` of ``app`` through ``plan`` (environment names, in order).

    ``kind`` is ``promotion`` or ``rollback`` (back to an environment's stable version).
    ``steps`` is the history the API shows: each step with its start, end and outcome.
    """

    id: str
    app: str
    version: str
    target: str
    plan: list[str]
    created_at: str
    kind: str = "promotion"
    status: str = RUNNING
    environment: str | None = None
    requested_by: str | None = None
    execution: str | None = None
    reason: str | None = None
    failed_step: str | None = None
    ended_at: str | None = None
    done: list[str] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    pull_requests: list[dict[str, Any]] = field(default_factory=list)
    replaced: dict[str, str] = field(default_factory=dict)  # env -> version before the update
    approval: dict[str, Any] | None = None
    published: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    revision: int = 0

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    def ref(self) -> dict[str, Any]:
        """The promotion as task inputs and event details carry it."""
        return {
            "id": self.id,
            "app": self.app,
            "version": self.version,
            "environment": self.environment or (self.plan[0] if self.plan else None),
            "target": self.target,
        }

    def pull_request(self, environment: str, purpose: str = "update") -> dict[str, Any] | None:
        return next(
            (
                p
                for p in self.pull_requests
                if p.get("environment") == environment and p.get("purpose") == purpose
            ),
            None,
        )

    def begin_step(self, name: str, environment: str | None, now: float) -> dict[str, Any]:
        """The open record of ``name`` in ``environment`` (started now if there is none)."""
        for step in reversed(self.steps):
            if step["step"] == name and step.get("environment") == environment:
                if step.get("ended_at") is None:
                    return step
                break
        step = {"step": name, "environment": environment, "started_at": iso(now)}
        self.steps.append(step)
        return step

    def end_step(
        self, name: str, environment: str | None, now: float, outcome: str, detail: str = ""
    ) -> None:
        step = self.begin_step(name, environment, now)
        step.update(ended_at=iso(now), outcome=outcome)
        if detail:
            step["detail"] = detail

    def as_api(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k not in ("published", "revision")}
        data["environment"] = self.environment
        return data

    def to_item(self, now: float) -> dict[str, Any]:
        return {"pk": PROMOTIONS_PK, "sk": self.id, **asdict(self), "expires_at": int(now) + KEEP_S}

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Promotion:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in item.items() if k in names})


@frozen
class AppVersions:
    """An app's versions in one environment (``previous_stable``: the stable version before
    ``stable``, where ``pitcrew rollback`` goes when the environment runs ``stable``)."""

    environment: str
    app: str
    current: str | None = None
    previous: str | None = None
    stable: str | None = None
    updated_at: str | None = None
    promotion: str | None = None
    previous_stable: str | None = None


class PromotionStore:
    """Everything promotions keep, in one table (injectable; default ``PROMOTIONS_TABLE``)."""

    def __init__(self, table: Table | None = None, *, clock: Callable[[], float] = time.time):
        self.table = table or Table(table_name(TABLE_ENV))
        self.clock = clock

    # -- promotions ------------------------------------------------------------------------
    def create(self, promotion: Promotion) -> None:
        self.table.put(promotion.to_item(self.clock()), condition="attribute_not_exists(pk)")

    def find(self, promotion_id: str) -> Promotion | None:
        if not _ID.fullmatch(promotion_id):
            return None  # not an id new_id() makes (and too long a key would be a 5xx)
        item = self.table.get({"pk": PROMOTIONS_PK, "sk": promotion_id})
        return Promotion.from_item(item) if item else None

    def get(self, promotion_id: str) -> Promotion:
        found = self.find(promotion_id)
        if found is None:
            raise NotFoundError(f"no promotion {promotion_id!r}")
        return found

    def recent(self, limit: int = 50, app: str | None = None) -> list[Promotion]:
        found = []
        for item in self.table.query("pk = :pk", values={":pk": PROMOTIONS_PK}, forward=False):
            promotion = Promotion.from_item(item)
            if app is None or promotion.app == app:
                found.append(promotion)
                if len(found) >= limit:
                    break
        return found

    def unfinished(self, since: float = 0.0) -> list[Promotion]:
        """Every promotion started at ``since`` or later (ids sort by time: only those are
        read) and not yet ended (running, or waiting for an approval), oldest first."""
        ended = {f":ended{i}": status for i, status in enumerate(ENDED)}
        items = self.table.query(
            "pk = :pk AND sk >= :since",
            names={"#status": "status"},
            values={":pk": PROMOTIONS_PK, ":since": id_floor(max(since, 0.0)), **ended},
            filter_expression=f"NOT (#status IN ({', '.join(ended)}))",
        )
        return [Promotion.from_item(item) for item in items]

    def change(self, promotion_id: str, edit: Callable[[Promotion], Any]) -> Promotion:
        """Apply ``edit`` to the stored promotion and write it back, retrying when another
        writer got there first (``revision``)."""
        for _ in range(20):
            promotion = self.get(promotion_id)
            seen = promotion.revision
            edit(promotion)
            promotion.revision = seen + 1
            try:
                self.table.put(
                    promotion.to_item(self.clock()),
                    condition="revision = :seen",
                    values={":seen": seen},
                )
            except ConflictError:
                continue
            return promotion
        raise ConflictError(f"promotion {promotion_id} keeps changing; try again")

    # -- locks -----------------------------------------------------------------------------
    def lock(self, app: str, environment: str, promotion_id: str, ttl_s: int) -> None:
        """Take the lock of ``app`` in ``environment`` for ``promotion_id``; a
        ``ConflictError`` naming the holder when another live promotion has it."""
        now = self.clock()
        key = {"pk": f"LOCK#{app}#{environment}", "sk": "LOCK"}
        try:
            self.table.put(
                {**key, "holder": promotion_id, "since": iso(now), "expires_at": int(now + ttl_s)},
                condition="attribute_not_exists(pk) OR holder = :me OR expires_at < :now",
                values={":me": promotion_id, ":now": int(now)},
            )
        except ConflictError:
            holder = (self.table.get(key) or {}).get("holder", "another promotion")
            raise ConflictError(
                f"promotion {holder} is already promoting {app} into {environment}"
            ) from None

    def lock_holder(self, app: str, environment: str) -> str | None:
        item = self.table.get({"pk": f"LOCK#{app}#{environment}", "sk": "LOCK"})
        if not item or int(item.get("expires_at", 0)) < self.clock():
            return None
        return str(item["holder"])

    def unlock(self, app: str, environment: str, promotion_id: str) -> None:
        # A ConflictError: someone else's lock by now; leave it.
        with contextlib.suppress(ConflictError):
            self.table.delete(
                {"pk": f"LOCK#{app}#{environment}", "sk": "LOCK"},
                condition="attribute_not_exists(pk) OR holder = :me",
                values={":me": promotion_id},
            )

    # -- verification and versions ---------------------------------------------------------
    def mark_verified(self, app: str, environment: str, version: str, promotion_id: str) -> None:
        self.table.put(
            {
                "pk": f"VERIFIED#{app}",
                "sk": f"{environment}#{version}",
                "promotion": promotion_id,
                "at": iso(self.clock()),
            }
        )

    def verified(self, app: str, environment: str, version: str) -> bool:
        return (
            self.table.get({"pk": f"VERIFIED#{app}", "sk": f"{environment}#{version}"}) is not None
        )

    def versions(self, environment: str, app: str) -> AppVersions:
        item = self.table.get({"pk": f"ENV#{environment}", "sk": f"APP#{app}"})
        if not item:
            return AppVersions(environment=environment, app=app)
        names = set(AppVersions.__dataclass_fields__)
        return AppVersions(**{k: v for k, v in item.items() if k in names})

    def all_versions(self, environment: str) -> list[AppVersions]:
        items = self.table.query(
            "pk = :pk AND begins_with(sk, :app)",
            values={":pk": f"ENV#{environment}", ":app": "APP#"},
        )
        names = set(AppVersions.__dataclass_fields__)
        return [AppVersions(**{k: v for k, v in i.items() if k in names}) for i in items]

    def record_version(
        self,
        environment: str,
        app: str,
        version: str,
        promotion_id: str,
        *,
        stable: bool,
        rollback: bool = False,
        replaced: str | None = None,
    ) -> AppVersions:
        """``version`` is now current in ``environment`` (and stable when verified there). A
        new stable version keeps the one it replaces as ``previous_stable``, unless it is a
        rollback (going back does not make the abandoned version a place to return to).
        ``replaced``: the version the update found in the manifests, ``previous`` unless the
        environment already ran ``version``."""
        before = self.versions(environment, app)
        if replaced is not None and replaced != version:
            previous: str | None = replaced
        else:
            previous = before.previous if before.current == version else before.current
        previous_stable = before.previous_stable
        if stable and version != before.stable:
            if not rollback:
                previous_stable = before.stable
            elif version == before.previous_stable:
                previous_stable = None
        after = AppVersions(
            environment=environment,
            app=app,
            current=version,
            previous=previous,
            stable=version if stable else before.stable,
            updated_at=iso(self.clock()),
            promotion=promotion_id,
            previous_stable=previous_stable,
        )
        self.table.put({"pk": f"ENV#{environment}", "sk": f"APP#{app}", **asdict(after)})
        return after

    # -- environment health ----------------------------------------------------------------
    def health(self, environment: str) -> dict[str, Any] | None:
        item = self.table.get({"pk": f"ENV#{environment}", "sk": "HEALTH"})
        if not item:
            return None
        return {k: v for k, v in item.items() if k not in ("pk", "sk")}

    def save_health(self, environment: str, health: Mapping[str, Any]) -> None:
        self.table.put({"pk": f"ENV#{environment}", "sk": "HEALTH", **health})

    # -- task tokens -----------------------------------------------------------------------
    def keep_token(self, promotion_id: str, purpose: str, token: str, **extra: Any) -> None:
        now = self.clock()
        self.table.put(
            {
                "pk": f"TOKEN#{promotion_id}",
                "sk": purpose,
                "token": token,
                "since": iso(now),
                **extra,
                "expires_at": int(now) + TOKEN_KEEP_S,
            }
        )
        self.table.put(
            {
                "pk": WAITING_PK,
                "sk": f"{promotion_id}#{purpose}",
                "promotion": promotion_id,
                "purpose": purpose,
                "since": iso(now),
                "expires_at": int(now) + TOKEN_KEEP_S,
            }
        )

    def take_token(self, promotion_id: str, purpose: str) -> str | None:
        """The waiting task's token, removed so that only one decision uses it."""
        key = {"pk": f"TOKEN#{promotion_id}", "sk": purpose}
        item = self.table.get(key)
        if not item:
            self._not_waiting(promotion_id, purpose)
            return None
        try:
            self.table.delete(
                key, condition="#t = :t", names={"#t": "token"}, values={":t": item["token"]}
            )
        except ConflictError:
            return None
        self._not_waiting(promotion_id, purpose)
        return str(item["token"])

    def peek_token(self, promotion_id: str, purpose: str) -> str | None:
        """The waiting task's token, left in place (a heartbeat does not decide anything)."""
        item = self.table.get({"pk": f"TOKEN#{promotion_id}", "sk": purpose})
        return str(item["token"]) if item else None

    def waiting(self) -> list[tuple[str, str]]:
        """(promotion id, purpose) of every task that waits for a token."""
        items = self.table.query("pk = :pk", values={":pk": WAITING_PK})
        return [(str(i["promotion"]), str(i["purpose"])) for i in items]

    def _not_waiting(self, promotion_id: str, purpose: str) -> None:
        self.table.delete({"pk": WAITING_PK, "sk": f"{promotion_id}#{purpose}"})

    def waiting_tokens(self, promotion_id: str) -> list[dict[str, Any]]:
        return list(self.table.query("pk = :pk", values={":pk": f"TOKEN#{promotion_id}"}))

    # -- pull requests ---------------------------------------------------------------------
    def index_pull(
        self, repo: str, number: int, promotion_id: str, environment: str, purpose: str
    ) -> None:
        self.table.put(
            {
                "pk": f"PULL#{repo}#{number}",
                "sk": "PULL",
                "promotion": promotion_id,
                "environment": environment,
                "purpose": purpose,
                "expires_at": int(self.clock()) + KEEP_S,
            }
        )

    def pull_owner(self, repo: str, number: int) -> dict[str, Any] | None:
        return self.table.get({"pk": f"PULL#{repo}#{number}", "sk": "PULL"})
