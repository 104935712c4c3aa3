"""A binlog chain's index read whole, as the shipper (scripts/agent/binlog_ship.py) lays it out in S3
(docs/binlog-shipping.md, "The index"): the one reader of db-restore, db-events, the drill and audit.

Format /2: the head `P/<chain>/index.json` holds the chain's metadata, the confirmed point, `pages` (how
many sealed pages precede it) and the newest segment entries; the older entries are in the immutable
pages `P/<chain>/index/<NNNNN>.json`. Format /1 (an agent before paging): every entry in the head.
"""
from __future__ import annotations

from typing import Any, Optional

from scripts.agent import binlog_ship as agent
from scripts.aws import s3 as s3api
from scripts.errors import CommandError
from scripts.times import utcnow

INDEX_FORMAT, INDEX_FORMAT_V1, PAGE_FORMAT = agent.INDEX_FORMAT, agent.INDEX_FORMAT_V1, agent.PAGE_FORMAT


class IndexUnreadable(CommandError):
    """A chain's head or page that is not what the head says it is: one line naming the key."""


def index_key(prefix: str, chain: str) -> str:
    return f"{prefix}/{chain}/index.json"


def page_key(prefix: str, chain: str, number: int) -> str:
    return f"{prefix}/{chain}/index/{number:05d}.json"


def read_chain_index(s3, bucket: str, prefix: str, chain: str) -> Optional[dict[str, Any]]:
    """The chain's head with `segments` holding every entry of the chain still in the bucket, oldest
    first; None when the chain has no head (yet).

    Pages are read newest first. A missing page is refused (IndexUnreadable naming its key) unless its
    segments are gone too: the bucket's lifecycle rule expires the oldest objects first and a page is
    written after its segments, so such a page expired with them, and so did every older one; the
    entries then start after it. Also refused: a head of an unknown format, a page that is not JSON or
    not that page of that chain. AWS errors other than a missing key propagate."""
    head_key = index_key(prefix, chain)
    head = _document(s3, bucket, head_key)
    if head is None:
        return None
    if head.get("format") == INDEX_FORMAT_V1:
        return {**head, "segments": _entries(bucket, head_key, head)}
    if head.get("format") != INDEX_FORMAT:
        raise IndexUnreadable(f"s3://{bucket}/{head_key} is not a binlog chain index (format {head.get('format')!r})")
    newest_first = [_entries(bucket, head_key, head)]   # the head's entries, then each page's
    oldest = newest_first[0][0] if newest_first[0] else None
    pages = head.get("pages")
    if not isinstance(pages, int) or isinstance(pages, bool) or pages < 0:
        raise IndexUnreadable(f"s3://{bucket}/{head_key}: `pages` is {pages!r}, not a number of sealed pages")
    for number in reversed(range(pages)):
        key = page_key(prefix, chain, number)
        page = _document(s3, bucket, key)
        if page is None:
            if _expired_before(s3, bucket, prefix, chain, oldest):
                break
            raise IndexUnreadable(f"s3://{bucket}/{key} is missing: page {number} of chain {chain}, counted by "
                                  f"{head_key}, while its segments are still in the bucket")
        if (page.get("format"), page.get("chain"), page.get("page")) != (PAGE_FORMAT, chain, number):
            raise IndexUnreadable(f"s3://{bucket}/{key} is not page {number} of chain {chain} (format "
                                  f"{page.get('format')!r}, chain {page.get('chain')!r}, page {page.get('page')!r})")
        newest_first.append(_entries(bucket, key, page))
        oldest = newest_first[-1][0] if newest_first[-1] else oldest
    return {**head, "segments": [entry for entries in reversed(newest_first) for entry in entries]}


def _document(s3, bucket: str, key: str) -> Optional[dict[str, Any]]:
    try:
        document = s3api.read_json_object(s3, bucket, key)
    except ValueError:
        raise IndexUnreadable(f"s3://{bucket}/{key} is not JSON") from None
    if document is not None and not isinstance(document, dict):
        raise IndexUnreadable(f"s3://{bucket}/{key} is not a JSON object")
    return document


def _entries(bucket: str, key: str, document: dict[str, Any]) -> list[dict[str, Any]]:
    entries = document.get("segments") or []
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise IndexUnreadable(f"s3://{bucket}/{key}: `segments` is not a list of segment entries")
    return entries


def _expired_before(s3, bucket: str, prefix: str, chain: str, oldest: Optional[dict[str, Any]]) -> bool:
    """Whether the segment just before `oldest`, the oldest entry read so far (so the last one the
    missing page listed), is gone or due to go by the lifecycle rule: S3 removes expired objects hours
    late and in no set order."""
    file = str(oldest.get("file")) if oldest else ""
    try:
        base, number = agent.binlog_number(file)
    except agent.ShipFailed:
        return False   # nothing to tell it by
    width = len(file) - len(base) - 1
    if number < 1:
        return False
    exists, expires = s3api.object_presence(s3, bucket, f"{prefix}/{chain}/{base}.{number - 1:0{width}d}")
    return not exists or (expires is not None and expires <= utcnow())
