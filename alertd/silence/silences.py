"""Silences and recurring maintenance windows, persisted in the store and shared by replicas.

Alertmanager's rules: a silence is pending before its start, active until its end, then expired
(kept for `retention`, then purged). An update that changes the matchers, or moves the start of
an active silence, expires the old silence and creates a new one with a new ID; other updates
(a pending silence, or the comment or end of an active one) happen in place.

Maintenance windows are silences that recur: matchers plus Alertmanager time intervals (weekly
hours, days of the month, in a zone). Their IDs start with "mw-" and they appear in silencedBy.

Limits, as Alertmanager 0.28's --silences.max-silences and --silences.max-silence-size-bytes:
at most `max_silences` active and pending silences (and as many maintenance windows), each at
most `max_silence_bytes` as stored; 0 means no limit. Expired silences do not count, but past
`max_silences` of them the oldest are dropped before their retention ends, so creating and
expiring in a loop cannot grow the store either.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from alertd.alert import fingerprint
from alertd.clock import Clock
from alertd.matchers import Matcher, matches_all
from alertd.silence.maintenance import Maintenance
from alertd.store.base import HistoryEntry, Store

log = logging.getLogger(__name__)

SILENCE = "silence"
MAINTENANCE = "maintenance"
# An acknowledgement (alertd.ack) is a silence with these annotations: inside alertd it mutes only
# the alerts it was made for, by fingerprint (a new alert its matchers match still pages); tools
# that read only matchers see it as the group's silence.
ACK = "alertd.ack"
ACK_FINGERPRINTS = "alertd.ack.fingerprints"


class SilenceError(ValueError):
    """A silence the user asked for that cannot be: the message says why (the API answers 400)."""


class NotFound(LookupError):
    pass


class State(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    EXPIRED = "expired"


@dataclass
class Silence:
    id: str
    matchers: list[Matcher]
    starts_at: float
    ends_at: float
    created_by: str = ""
    comment: str = ""
    updated_at: float = 0.0
    annotations: dict[str, str] = field(default_factory=dict)  # Alertmanager 0.32+: free-form key/values
    # an ack's fingerprints (None: an ordinary silence), parsed once: mutes() asks per alert
    bound: frozenset[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.annotations.get(ACK) == "true":
            self.bound = frozenset(f for f in self.annotations.get(ACK_FINGERPRINTS, "").split(",") if f)

    def state(self, now: float) -> State:
        if now >= self.ends_at:
            return State.EXPIRED
        if now < self.starts_at:
            return State.PENDING
        return State.ACTIVE

    def to_doc(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "matchers": [m.to_api() for m in self.matchers],
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "created_by": self.created_by,
            "comment": self.comment,
            "updated_at": self.updated_at,
            "annotations": self.annotations,
        }

    @classmethod
    def from_doc(cls, d: Mapping[str, Any]) -> Silence:
        return cls(
            id=d["id"],
            matchers=[Matcher.from_api(m) for m in d["matchers"]],
            starts_at=float(d["starts_at"]),
            ends_at=float(d["ends_at"]),
            created_by=d.get("created_by", ""),
            comment=d.get("comment", ""),
            updated_at=float(d.get("updated_at", 0.0)),
            annotations=dict(d.get("annotations") or {}),  # absent in silences stored before 0.32's API
        )


def can_update_in_place(old: Silence, new: Silence, now: float) -> bool:
    """Alertmanager's canUpdate: same matchers, and no rewriting of an active silence's past."""
    if [str(m) for m in old.matchers] != [str(m) for m in new.matchers]:
        return False
    state = old.state(now)
    if state is State.ACTIVE:
        # to the second, as 0.34 compares: clients post back the start they read, which the API
        # writes to the millisecond while alertd keeps it to the microsecond (amtool silence update)
        return math.floor(new.starts_at) == math.floor(old.starts_at) and new.ends_at >= now
    if state is State.PENDING:
        return new.starts_at >= now
    return False


class Silences:
    """The silence store's view for the notify pipeline (`mutes`) and the API (everything else)."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        retention: float = 5 * 86400.0,
        max_silences: int = 0,
        max_silence_bytes: int = 0,
    ) -> None:
        self.store = store
        self.clock = clock
        self.retention = retention
        self.max_silences = max_silences
        self.max_silence_bytes = max_silence_bytes
        self.evicted_expired = 0  # expired silences dropped early to stay within max_silences
        self._silences: dict[str, Silence] = {}
        self._maintenance: dict[str, Maintenance] = {}
        self._versions = (-1, -1)

    async def load(self) -> None:
        self._silences = {}
        for d in await self.store.all(SILENCE):
            try:
                s = Silence.from_doc(d)
            except (KeyError, ValueError, TypeError) as e:  # a damaged record must not hide the rest
                log.error("skipping unreadable silence %r: %s", d.get("id"), e)
                continue
            self._silences[s.id] = s
        self._maintenance = {}
        for d in await self.store.all(MAINTENANCE):
            try:
                m = Maintenance.from_doc(d)
            except (KeyError, ValueError, TypeError) as e:
                log.error("skipping unreadable maintenance window %r: %s", d.get("id"), e)
                continue
            self._maintenance[m.id] = m
        self._versions = (await self.store.version(SILENCE), await self.store.version(MAINTENANCE))

    async def refresh(self) -> bool:
        """Reload when another replica (or process) changed silences; cheap when nothing did."""
        versions = (await self.store.version(SILENCE), await self.store.version(MAINTENANCE))
        if versions == self._versions:
            return False
        await self.load()
        return True

    # -- the pipeline's question -----------------------------------------------------------

    def mutes(self, labels: Mapping[str, str], now: float) -> list[str]:
        """IDs of active silences and maintenance windows matching these labels (an ack: only
        the label sets it was made for)."""
        out = []
        fp = ""
        for s in self._silences.values():
            if s.state(now) is not State.ACTIVE or not matches_all(s.matchers, labels):
                continue
            if s.bound is not None:
                fp = fp or fingerprint(labels)
                if fp not in s.bound:
                    continue
            out.append(s.id)
        out += [m.id for m in self._maintenance.values() if m.active(now) and matches_all(m.matchers, labels)]
        return sorted(out)

    # -- reads -----------------------------------------------------------------------------

    def get(self, silence_id: str) -> Silence:
        try:
            return self._silences[silence_id]
        except KeyError:
            raise NotFound(silence_id) from None

    def query(self, filters: Sequence[Matcher] = (), *, include_expired: bool = True) -> list[Silence]:
        """Silences whose matchers satisfy every filter matcher (amtool's semantics), newest first."""
        now = self.clock.now()
        out = []
        for s in self._silences.values():
            if not include_expired and s.state(now) is State.EXPIRED:
                continue
            if filters and not all(_filter_matches(f, s.matchers) for f in filters):
                continue
            out.append(s)
        return sorted(out, key=lambda s: (s.state(now) != State.ACTIVE, -s.updated_at))

    def maintenance(self) -> list[Maintenance]:
        return sorted(self._maintenance.values(), key=lambda m: -m.created_at)

    # -- writes ----------------------------------------------------------------------------

    async def upsert(
        self,
        matchers: list[Matcher],
        starts_at: float,
        ends_at: float,
        *,
        created_by: str,
        comment: str,
        author: str,
        silence_id: str | None = None,
        annotations: Mapping[str, str] | None = None,
        internal: bool = False,
    ) -> str:
        """Create or update; returns the (possibly new) ID. Raises SilenceError / NotFound.

        `annotations` None on an update keeps the old silence's: clients that know no annotations
        (amtool up to 0.28) post an update without them, and an ack would lose what makes it one.
        `max_silence_bytes` bounds what a client writes: annotations alertd wrote (`internal`: an
        ack's fingerprints, one per acked alert) or kept from the old silence do not count."""
        now = self.clock.now()
        if not matchers:
            raise SilenceError("a silence needs at least one matcher")
        if all(m.matches({}) for m in matchers):
            raise SilenceError(
                "these matchers match every alert (they all match an empty label set); add one that names a label value"
            )
        if ends_at <= starts_at:
            raise SilenceError("endsAt must be after startsAt")
        if ends_at <= now:
            raise SilenceError("endsAt is in the past")
        starts_at = max(starts_at, now) if silence_id is None else starts_at
        await self.refresh()
        old = self.get(silence_id) if silence_id is not None else None
        client_annotations = annotations is not None and not internal
        if annotations is None:
            annotations = old.annotations if old is not None else {}
        new = Silence(
            str(uuid.uuid4()), list(matchers), starts_at, ends_at, created_by, comment, now, dict(annotations)
        )
        doc = new.to_doc()
        self._check_size("silence", doc if client_annotations else {**doc, "annotations": {}})
        live = sum(1 for s in self._silences.values() if s.state(now) is not State.EXPIRED and s.id != silence_id)
        self._check_count("silences", live)
        if old is not None:
            if can_update_in_place(old, new, now):
                new.id = old.id
                await self._save(new)
                await self._record(author, "silence updated", new)
                return new.id
            if old.state(now) is not State.EXPIRED:
                await self._expire(old, now)
                await self._record(author, "silence expired (replaced)", old)
            new.starts_at = max(new.starts_at, now)
        await self._save(new)
        await self._record(author, "silence created", new)
        await self._drop_oldest_expired(now)
        return new.id

    def _check_size(self, what: str, doc: dict[str, Any]) -> None:
        size = len(orjson.dumps(doc))
        if self.max_silence_bytes > 0 and size > self.max_silence_bytes:
            raise SilenceError(
                f"this {what} is {size} bytes, over the limit of {self.max_silence_bytes} "
                "(silences.max_silence_bytes): shorten the comment or the matchers"
            )

    def _check_count(self, what: str, live: int) -> None:
        if self.max_silences > 0 and live >= self.max_silences:
            raise SilenceError(
                f"there are already {live} active and pending {what}, the limit "
                f"(silences.max_silences: {self.max_silences}): expire some first"
            )

    async def _drop_oldest_expired(self, now: float) -> None:
        if self.max_silences <= 0:
            return
        expired = sorted((s for s in self._silences.values() if s.state(now) is State.EXPIRED), key=lambda s: s.ends_at)
        for s in expired[: max(0, len(expired) - self.max_silences)]:
            await self.store.delete(SILENCE, s.id)
            self._silences.pop(s.id, None)
            self.evicted_expired += 1
        if len(expired) > self.max_silences:
            self._versions = (await self.store.version(SILENCE), self._versions[1])

    async def expire(self, silence_id: str, author: str) -> None:
        await self.refresh()
        s = self.get(silence_id)
        now = self.clock.now()
        if s.state(now) is State.EXPIRED:
            raise SilenceError(f"silence {silence_id} is already expired")
        await self._expire(s, now)
        await self._record(author, "silence expired", s)

    async def _expire(self, s: Silence, now: float) -> None:
        if s.state(now) is State.PENDING:
            s.starts_at = now
        s.ends_at = now
        s.updated_at = now
        await self._save(s)

    async def _save(self, s: Silence) -> None:
        await self.store.put(SILENCE, s.id, s.to_doc(), expires_at=s.ends_at + self.retention)
        self._silences[s.id] = s
        self._versions = (await self.store.version(SILENCE), self._versions[1])

    async def add_maintenance(
        self, matchers: list[Matcher], intervals: list[dict[str, Any]], *, comment: str, created_by: str, author: str
    ) -> str:
        if not matchers:
            raise SilenceError("a maintenance window needs at least one matcher")
        if not intervals:
            raise SilenceError("a maintenance window needs at least one time interval")
        try:
            m = Maintenance(f"mw-{uuid.uuid4()}", matchers, intervals, comment, created_by, self.clock.now())
        except ValueError as e:
            raise SilenceError(str(e)) from None
        self._check_size("maintenance window", m.to_doc())
        await self.refresh()
        self._check_count("maintenance windows", sum(1 for w in self._maintenance.values() if w.expired_at is None))
        await self.store.put(MAINTENANCE, m.id, m.to_doc())
        self._maintenance[m.id] = m
        await self.store.record(
            HistoryEntry(
                ts=self.clock.now(), kind="api", author=author, reason="maintenance window created", detail={"id": m.id}
            )
        )
        return m.id

    async def expire_maintenance(self, mw_id: str, author: str) -> None:
        await self.refresh()
        m = self._maintenance.get(mw_id)
        if m is None:
            raise NotFound(mw_id)
        if m.expired_at is not None:
            raise SilenceError(f"maintenance window {mw_id} is already expired")
        now = self.clock.now()
        m.expired_at = now
        await self.store.put(MAINTENANCE, m.id, m.to_doc(), expires_at=now + self.retention)
        await self.store.record(
            HistoryEntry(ts=now, kind="api", author=author, reason="maintenance window expired", detail={"id": m.id})
        )

    async def _record(self, author: str, reason: str, s: Silence) -> None:
        await self.store.record(
            HistoryEntry(
                ts=self.clock.now(),
                kind="api",
                author=author,
                reason=reason,
                detail={
                    "id": s.id,
                    "matchers": [str(m) for m in s.matchers],
                    "comment": s.comment,
                    "starts_at": s.starts_at,
                    "ends_at": s.ends_at,
                },
            )
        )


def _filter_matches(f: Matcher, silence_matchers: Sequence[Matcher]) -> bool:
    """amtool's filter: some equality matcher of the silence has the filter's label and a value it matches."""
    return any(m.name == f.name and f.matches({m.name: m.value}) for m in silence_matchers)
