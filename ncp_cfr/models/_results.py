"""Whole answers: the two endpoints' results, ``analyze``'s and ``find_lookalike``'s."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar, Final, Union

from pydantic import Field, PrivateAttr

from ncp_cfr import _tables
from ncp_cfr.models._base import _Model
from ncp_cfr.models._faces import Celebrity, CelebrityFace, Face, Info, Size, UploadInfo


class _Result(_Model):
    info: Info
    upload: UploadInfo | None = Field(default=None, exclude=True, repr=False)
    _raw: dict[str, Any] | None = PrivateAttr(default=None)
    _raw_body: bytes | None = PrivateAttr(default=None)
    _request_id: str | None = PrivateAttr(default=None)
    #: The class of this result's faces, for the table's columns.
    _FACE: ClassVar[type[Face] | type[CelebrityFace]]

    @property
    def request_id(self) -> str | None:
        """The service's id of the request this answers (from its headers), for support tickets.

        ``None`` when the answer carried none. For an [`Analysis`][ncp_cfr.Analysis], the id of
        the face call.
        """
        return self._request_id

    @property
    def raw(self) -> dict[str, Any] | None:
        """The service's JSON exactly as received (coordinates in the upload's pixels), if any."""
        if self._raw is None and self._raw_body is not None:
            # Parsed on first use: most callers never look, and every call would pay for it.
            self._raw = json.loads(self._raw_body)
        return self._raw

    # No __len__ on purpose: a result with no face must still be truthy (`if result:` after a
    # call means "we got an answer"); count faces with len(result.faces).

    def _table(self) -> tuple[str, list[str], list[list[str]]]:
        """``(caption, header, rows)``: one row per face, numbered, in result order."""
        size, count = self.info.size, len(self.faces)  # type: ignore[attr-defined]
        caption = f"{type(self).__name__}: {count} {'face' if count == 1 else 'faces'} in a "
        caption += f"{size.width}x{size.height} image"
        rows = [[str(i), *face._row()] for i, face in enumerate(self.faces)]  # type: ignore[attr-defined]
        return caption, ["#", *self._FACE._HEADER], rows

    def _repr_html_(self) -> str:
        caption, header, rows = self._table()
        return _tables.html_table("ncp-cfr-result", caption, header, rows, empty="no faces")


class FaceResult(_Result):
    """The face endpoint's answer. Coordinates are pixels of the image the caller passed."""

    faces: list[Face] = Field(default_factory=list)
    _FACE = Face


class CelebrityResult(_Result):
    """The celebrity endpoint's answer: one name per detected face, without positions."""

    faces: list[CelebrityFace] = Field(default_factory=list)
    _FACE = CelebrityFace

    def ranked(self) -> list[Celebrity]:
        """The names of all faces, most confident first (ties keep the service's order)."""
        return sorted((f.celebrity for f in self.faces), key=lambda c: -c.confidence)

    def names(self, min_confidence: float = 0.0) -> list[str]:
        """Names at or above ``min_confidence``, most confident first.

        The service names *somebody* even at confidence 0.01: pick a threshold for your use.
        """
        return [c.value for c in self.ranked() if c.confidence >= min_confidence]


class AnalyzedFace(Face):
    """A face of [`Analysis`][ncp_cfr.Analysis]: everything [`Face`][ncp_cfr.Face] has, plus its own
    lookalike.

    ``lookalike`` is ``None`` when the face was too small to crop usefully, when the celebrity
    endpoint named nobody above the threshold, or when its call failed (``lookalike_error`` says).
    """

    lookalike: Celebrity | None = None
    lookalike_error: str | None = None

    _HEADER = (*Face._HEADER, "lookalike")

    def _row(self) -> list[str]:
        if self.lookalike is not None:
            found = f"{self.lookalike.value} {_tables.percent(self.lookalike.confidence)}"
        else:
            found = f"({self.lookalike_error})" if self.lookalike_error else _tables.NONE
        return [*super()._row(), found]


class Analysis(_Result):
    """Faces with attributes and a per-face lookalike, in the caller's pixels (``analyze``)."""

    faces: list[AnalyzedFace] = Field(default_factory=list)
    _FACE = AnalyzedFace


class LookalikeScale(_Model):
    """What the celebrity endpoint said at one upload size (``find_lookalike``)."""

    side: int = Field(description="the longest side asked for, in pixels")
    width: int = Field(description="the upload's width")
    height: int = Field(description="the upload's height")
    names: list[Celebrity] = Field(default_factory=list)
    """Every name this size returned (one per face it saw), most confident first."""
    top: Celebrity | None = None
    """This size's vote: its most confident name, ``None`` if none (or under the threshold)."""
    error: str | None = None
    """Why this size failed, if it did (it then does not vote)."""
    request_id: str | None = None
    """The service's id of this size's request, when its answer carried one."""


class LookalikeCandidate(_Model):
    """A name some upload sizes voted for, with how sure the service was across them."""

    name: str
    votes: int = Field(description="how many sizes had this as their most confident name")
    mean_confidence: float
    max_confidence: float
    min_confidence: float
    sides: list[int] = Field(default_factory=list)
    """The sizes (longest side, px) that voted for it, ascending."""


class Lookalike(_Model):
    """The celebrity endpoint asked at several upload sizes, and the names ranked by votes.

    Each size that answered votes for its most confident name (none if that name is under the
    call's `min_confidence`). `candidates` rank every name voted for by votes, then mean
    confidence: that ranking is always there, however weak.

    **A match.** The leading candidate is the match, `best`, when both hold:

    - its mean confidence over the sizes that voted for it is at least `match_confidence`
      (default 0.3: the service names somebody for every face, down to 0.01);
    - it won more sizes than any other name (a tie for most votes is no match).

    Otherwise `best` is `None` and the answer is "no clear match"; `candidates[0]` is still
    the leading name, for a caller who wants it anyway. (Version 0.1.0 made `best` the first
    candidate always, a 1 % guess included; `best is None` already meant "nobody", so code that
    checks for `None` keeps working and now also skips guesses.)

    **A stable vote.** `stable` is true when there is a match and it won more than half of
    the sizes that answered (a size that answered with no face, or with a name under
    `min_confidence`, counts as answered). A match that won only two sizes of eight is the best
    guess, not a settled answer.
    """

    size: Size = Field(description="the caller's image size")
    best: LookalikeCandidate | None = None
    """The match, or `None` when there is no clear match (see above)."""
    candidates: list[LookalikeCandidate] = Field(default_factory=list)
    stable: bool = False
    match_confidence: float = Field(
        default=0.3, description="the mean confidence a candidate needed to be the match"
    )
    per_scale: list[LookalikeScale] = Field(default_factory=list)

    _HEADER: ClassVar[tuple[str, ...]] = (
        "rank",
        "name",
        "votes",
        "mean",
        "min",
        "max",
        "sizes (px)",
    )

    def _table(self) -> tuple[str, list[str], list[list[str]]]:
        """``(verdict, header, rows)``: one row per candidate, best first."""
        answered = sum(1 for scale in self.per_scale if scale.error is None)
        pct = _tables.percent
        rows = [
            [
                str(rank),
                c.name,
                f"{c.votes}/{answered}",
                pct(c.mean_confidence),
                pct(c.min_confidence),
                pct(c.max_confidence),
                ",".join(str(side) for side in c.sides),
            ]
            for rank, c in enumerate(self.candidates, start=1)
        ]
        return self._verdict(answered), list(self._HEADER), rows

    def _verdict(self, answered: int) -> str:
        """One line: the match and whether the vote is stable, or why there is no clear match."""
        pct = _tables.percent
        if self.best is not None:
            best = self.best
            stability = "stable" if self.stable else "unstable: it did not win most sizes"
            return (
                f"best: {best.name} ({best.votes} of {answered} sizes, "
                f"mean {pct(best.mean_confidence)}, {stability})"
            )
        if not self.candidates:
            return f"no clear match: no name at any of {answered} sizes"
        leader = self.candidates[0]
        if leader.mean_confidence < self.match_confidence:
            return (
                f"no clear match: the leading name, {leader.name}, averages "
                f"{pct(leader.mean_confidence)} (a match needs {pct(self.match_confidence)})"
            )
        tied = [c.name for c in self.candidates if c.votes == leader.votes]
        return f"no clear match: {', '.join(tied)} tie at {leader.votes} of {answered} sizes each"

    def _repr_html_(self) -> str:
        return _tables.html_table("ncp-cfr-lookalike", *self._table())


#: What one call of either endpoint answers.
EndpointResult = Union[FaceResult, CelebrityResult]

#: The result model of each batch operation (``client.stream``'s ``operation``): what a stored
#: or exported answer of that operation is read back as.
RESULTS_BY_OPERATION: Final[Mapping[str, type[Any]]] = {
    "face": FaceResult,
    "celebrity": CelebrityResult,
    "analyze": Analysis,
    "lookalike": Lookalike,
}
