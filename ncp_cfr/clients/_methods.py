"""The public methods of both clients, written once.

Each method here checks its arguments and says what to run: a ``Single`` plan (one image, its
calls side by side) or ``Many`` (a batch). The ``public`` decorator makes each
the method of both shells: ``Client`` runs it and returns the value, ``AsyncClient`` returns a
coroutine. A method's parameters, defaults, checks and documentation exist once.
"""

from __future__ import annotations

import inspect
import os
import types
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, Generic, Literal, ParamSpec, TypeVar, overload

from ncp_cfr.batches import Batch, BatchItem
from ncp_cfr.clients._base import (
    DEFAULT_BATCH_CONCURRENCY,
    DEFAULT_FAN_OUT,
    HttpT,
    ImageInput,
    Progress,
    check_concurrency,
)
from ncp_cfr.clients._batches import BatchRun, StoreOptions
from ncp_cfr.clients._plans import Plans
from ncp_cfr.images import ChannelOrder
from ncp_cfr.models import Analysis, CelebrityResult, FaceResult, Lookalike
from ncp_cfr.pipelines import (
    DEFAULT_MARGIN,
    DEFAULT_MATCH_CONFIDENCE,
    DEFAULT_MIN_FACE,
    DEFAULT_SCALES,
    Plan,
)
from ncp_cfr.store import ResultStore

T = TypeVar("T")
P = ParamSpec("P")
#: What ``stream`` runs over each photo.
Operation = Literal["face", "celebrity", "analyze", "lookalike"]

if TYPE_CHECKING:  # for the types of the public methods on each shell
    from ncp_cfr.clients._async import AsyncBatchStream, AsyncClient
    from ncp_cfr.clients._sync import BatchStream, Client


@dataclass(frozen=True)
class Single(Generic[T]):
    """Run ``plan`` (one image) with up to ``concurrency`` of its calls at once; its value."""

    plan: Plan[T]
    concurrency: int = 1


@dataclass(frozen=True)
class Many(Generic[T]):
    """Run ``plans`` over every input of ``run``; one [`BatchItem`][ncp_cfr.BatchItem] each.

    ``T`` is what the public method returns: the list of items.

    ``light_finish``: the plans' last step only maps a result back (single-call plans), cheap
    enough for the async shell to run in the event loop.

    ``slots``: for the async shell, an ``anyio.CapacityLimiter`` that bounds the calls in flight
    of this batch together with others sharing it (``ncp_cfr.ray`` runs a worker's batches side
    by side within one bound); ``None``: the batch's own ``concurrency``.
    """

    run: BatchRun
    plans: Callable[[ImageInput], Plan[Any]]
    light_finish: bool = False
    slots: Any = None


class public(Generic[P, T]):
    """A public method of both clients, written once (signature, docstring, checks, plan).

    The decorated method says what to run (``Single`` or ``Many``); on a
    [`Client`][ncp_cfr.Client] the public method runs it and returns its value, on an
    [`AsyncClient`][ncp_cfr.AsyncClient] it returns a coroutine of it: the shell's ``_perform``
    decides, and that is the only difference between the two.
    """

    def __init__(self, method: Callable[Concatenate[Any, P], Single[T] | Many[T]]) -> None:
        self._method = method

        def call(client: Any, /, *args: Any, **kwargs: Any) -> Any:
            return client._perform(method(client, *args, **kwargs))

        # help(), IDEs and inspect see the method's own name, docs and parameters, returning
        # what the caller gets (``Analysis``, not ``Single[Analysis]``).
        call.__name__ = call.__qualname__ = method.__name__
        call.__doc__ = method.__doc__
        signature = inspect.signature(method)
        returns = str(signature.return_annotation)
        for work in ("Single[", "Many["):
            if returns.startswith(work):
                returns = returns[len(work) : -1]
        call.__signature__ = signature.replace(return_annotation=returns)  # type: ignore[attr-defined]
        self._call = call
        self.__doc__ = method.__doc__

    @overload
    def __get__(self, client: None, owner: type[Any]) -> Callable[..., Any]: ...
    @overload
    def __get__(self, client: Client, owner: type[Any]) -> Callable[P, T]: ...
    @overload
    def __get__(
        self, client: AsyncClient, owner: type[Any]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...
    def __get__(self, client: Any, owner: type[Any]) -> Any:
        if client is None:  # on the class: the function, for help() and inspect
            return self._call
        return types.MethodType(self._call, client)


class streaming(Generic[P]):
    """The streaming method of both clients, written once: ``Client`` gives a
    [`BatchStream`][ncp_cfr.BatchStream] (an iterator), ``AsyncClient`` an
    [`AsyncBatchStream`][ncp_cfr.AsyncBatchStream] (an async iterator, used with ``async with``).
    """

    def __init__(self, method: Callable[Concatenate[Any, P], Many[Any]]) -> None:
        def call(client: Any, /, *args: Any, **kwargs: Any) -> Any:
            return client._open_stream(method(client, *args, **kwargs))

        call.__name__ = call.__qualname__ = method.__name__
        call.__doc__ = method.__doc__
        call.__signature__ = inspect.signature(method).replace(  # type: ignore[attr-defined]
            return_annotation="BatchStream"
        )
        self._call = call
        self.__doc__ = method.__doc__

    @overload
    def __get__(self, client: None, owner: type[Any]) -> Callable[..., Any]: ...
    @overload
    def __get__(self, client: Client, owner: type[Any]) -> Callable[P, BatchStream]: ...
    @overload
    def __get__(self, client: AsyncClient, owner: type[Any]) -> Callable[P, AsyncBatchStream]: ...
    def __get__(self, client: Any, owner: type[Any]) -> Any:
        if client is None:
            return self._call
        return types.MethodType(self._call, client)


class Methods(Plans[HttpT]):
    """The public methods' signatures, documentation, checks and plans, for both shells."""

    # -- the public methods (turned into Client's and AsyncClient's by the shells) -------------

    @public
    def detect_faces(
        self, image: ImageInput, *, channel_order: ChannelOrder = "rgb"
    ) -> Single[FaceResult]:
        """Find faces: box, five landmarks, gender, age, emotion and pose of each.

        Args:
            image: a path, bytes, a binary file object, a ``PIL.Image``, a NumPy-style array
                (``channel_order="bgr"`` for OpenCV) or a [`PreparedImage`][ncp_cfr.PreparedImage].
            channel_order: the channel order of an array ``image``.

        Returns:
            The faces, with coordinates in the pixels of ``image`` as you see it, and the
            service's ``request_id``.

        Raises:
            ImageError: the image could not be prepared (nothing was sent).
            APIError: the service refused the request (a subclass says why).
            APIConnectionError: no answer (``APITimeoutError`` if out of time).
        """
        return Single(self._face_plans(channel_order)(image))

    @public
    def recognize_celebrities(
        self, image: ImageInput, *, channel_order: ChannelOrder = "rgb"
    ) -> Single[CelebrityResult]:
        """Name the most similar celebrity for each face (no positions: see ``analyze``).

        Takes the same ``image`` kinds and raises the same errors as
        [`detect_faces`][ncp_cfr.Client.detect_faces].
        """
        return Single(self._celebrity_plans(channel_order)(image))

    @public
    def analyze(
        self,
        image: ImageInput,
        *,
        margin: float = DEFAULT_MARGIN,
        min_face: int = DEFAULT_MIN_FACE,
        min_confidence: float = 0.0,
        concurrency: int = DEFAULT_FAN_OUT,
        channel_order: ChannelOrder = "rgb",
    ) -> Single[Analysis]:
        """Faces with their attributes, and each face's own lookalike.

        The celebrity endpoint does not say which face a name belongs to, so this detects the
        faces first, then sends a crop around each face to the celebrity endpoint (up to
        ``concurrency`` at a time) and gives each face the name found in its own crop.

        Args:
            image: any image [`detect_faces`][ncp_cfr.Client.detect_faces] takes. Cropping needs the
                caller's pixels; for a [`PreparedImage`][ncp_cfr.PreparedImage] the crops come from
                its (smaller) upload.
            margin: context kept around each face box, as a fraction of its width/height per
                side (default 0.35), clipped to the image.
            min_face: faces narrower or lower than this many pixels (of ``image``) are not sent:
                their ``lookalike`` stays ``None`` and no call is made (default 32).
            min_confidence: a name under this confidence is dropped (``lookalike=None``).
            concurrency: crop calls in flight at once.
            channel_order: the channel order of an array ``image``.

        Returns:
            The [`Analysis`][ncp_cfr.Analysis], in the pixels of ``image`` as you see it. A crop
            call that failed leaves that face with ``lookalike=None`` and ``lookalike_error`` set;
            the other faces keep theirs.

        Raises:
            ImageError: the image could not be prepared (nothing was sent).
            APIError: the face call failed (a subclass says why).
            APIConnectionError: the face call got no answer.
        """
        check_concurrency(concurrency)
        plans = self._analyze_plans(channel_order, margin, min_face, min_confidence)
        return Single(plans(image), concurrency)

    @public
    def find_lookalike(
        self,
        image: ImageInput,
        *,
        scales: Sequence[float] = DEFAULT_SCALES,
        min_confidence: float = 0.0,
        match_confidence: float = DEFAULT_MATCH_CONFIDENCE,
        concurrency: int = DEFAULT_FAN_OUT,
        channel_order: ChannelOrder = "rgb",
    ) -> Single[Lookalike]:
        """Ask the celebrity endpoint at several upload sizes and rank the names by votes.

        The name the service gives a face changes with the upload's resolution; one call is a
        sample, several are a vote. Each size votes for its most confident name.

        Args:
            image: any image [`detect_faces`][ncp_cfr.Client.detect_faces] takes; best with one face
                (crop group photos first, or use [`analyze`][ncp_cfr.Client.analyze]).
            scales: longest sides in pixels (50 to 2048), or fractions of the image's
                longest side (values in (0, 1]). Sizes above the image's own are capped to it
                and repeats merged, so a small image gets fewer calls; a pixel size above 2048
                (`ncp_cfr.pipelines.MAX_SCALE`: larger uploads would not fit the service's 2 MB
                at the size asked) raises `InvalidArgumentError`, while a fraction of a larger
                image is capped at 2048. Default: 320, 480, 640, 800, 1024, 1280, 1600 and
                2048 px.
            min_confidence: a size whose best name is under this votes for nobody.
            match_confidence: the mean confidence the leading name needs to be the match
                (`best`); see [`Lookalike`][ncp_cfr.Lookalike] for the whole rule.
            concurrency: calls in flight at once.
            channel_order: the channel order of an array ``image``.

        Returns:
            The [`Lookalike`][ncp_cfr.Lookalike]: ``best`` (the match, or `None` when there
            is no clear match), ranked ``candidates``, ``stable`` and what each size said
            (``per_scale``, each with its ``request_id``). A size that failed is recorded there.

        Raises:
            ImageError: the image could not be read.
            CFRError: every size failed (the last size's error), or a bad argument.
        """
        check_concurrency(concurrency)
        plans = self._lookalike_plans(channel_order, scales, min_confidence, match_confidence)
        return Single(plans(image), concurrency)

    @public
    def detect_faces_many(
        self,
        images: Iterable[ImageInput],
        *,
        concurrency: int = DEFAULT_BATCH_CONCURRENCY,
        rate_limit: float | None = None,
        progress: Progress = False,
        channel_order: ChannelOrder = "rgb",
    ) -> Many[Batch[FaceResult]]:
        """[`detect_faces`][ncp_cfr.Client.detect_faces] for many images, concurrently; one failure
        never stops the rest.

        Args:
            images: the images (any kind [`detect_faces`][ncp_cfr.Client.detect_faces] takes).
            concurrency: calls in flight at once (worker threads).
            rate_limit: at most this many requests per second over the whole batch, retries
                included (``None``: no client-side limit).
            progress: ``True`` for a tqdm bar (needs the ``progress`` extra), or a
                ``callable(done, total)`` called in this thread after each image.
            channel_order: the channel order of array images.

        Returns:
            One [`BatchItem`][ncp_cfr.BatchItem] per image, in input order: ``.result``, or
            ``.error`` (a [`CFRError`][ncp_cfr.CFRError]; an unreadable input is an ``ImageError``).
            The list is a [`Batch`][ncp_cfr.Batch], a `list` that Jupyter shows as a table, with
            the batch's [`summary`][ncp_cfr.BatchSummary].

        Raises:
            CFRError: a bad argument. Exceptions other than ``CFRError`` (and
                ``KeyboardInterrupt``) stop the batch: nothing new is sent, queued images are
                dropped, and the exception propagates.
        """
        plans = self._face_plans(channel_order)
        return Many(BatchRun(images, concurrency, rate_limit, progress), plans, light_finish=True)

    @public
    def recognize_celebrities_many(
        self,
        images: Iterable[ImageInput],
        *,
        concurrency: int = DEFAULT_BATCH_CONCURRENCY,
        rate_limit: float | None = None,
        progress: Progress = False,
        channel_order: ChannelOrder = "rgb",
    ) -> Many[Batch[CelebrityResult]]:
        """[`recognize_celebrities`][ncp_cfr.Client.recognize_celebrities] for many images; see
        [`detect_faces_many`][ncp_cfr.Client.detect_faces_many].
        """
        plans = self._celebrity_plans(channel_order)
        return Many(BatchRun(images, concurrency, rate_limit, progress), plans, light_finish=True)

    @public
    def analyze_many(
        self,
        images: Iterable[ImageInput],
        *,
        margin: float = DEFAULT_MARGIN,
        min_face: int = DEFAULT_MIN_FACE,
        min_confidence: float = 0.0,
        concurrency: int = DEFAULT_BATCH_CONCURRENCY,
        rate_limit: float | None = None,
        progress: Progress = False,
        channel_order: ChannelOrder = "rgb",
    ) -> Many[Batch[Analysis]]:
        """[`analyze`][ncp_cfr.Client.analyze] for many images; see
        [`detect_faces_many`][ncp_cfr.Client.detect_faces_many].

        ``concurrency`` and ``rate_limit`` count every call: the face calls and the crop calls
        of all images share them. ``margin``, ``min_face`` and ``min_confidence`` are
        [`analyze`][ncp_cfr.Client.analyze]'s.
        """
        plans = self._analyze_plans(channel_order, margin, min_face, min_confidence)
        return Many(BatchRun(images, concurrency, rate_limit, progress), plans)

    @public
    def find_lookalike_many(
        self,
        images: Iterable[ImageInput],
        *,
        scales: Sequence[float] = DEFAULT_SCALES,
        min_confidence: float = 0.0,
        match_confidence: float = DEFAULT_MATCH_CONFIDENCE,
        concurrency: int = DEFAULT_BATCH_CONCURRENCY,
        rate_limit: float | None = None,
        progress: Progress = False,
        channel_order: ChannelOrder = "rgb",
    ) -> Many[Batch[Lookalike]]:
        """[`find_lookalike`][ncp_cfr.Client.find_lookalike] for many images; see
        [`detect_faces_many`][ncp_cfr.Client.detect_faces_many].

        ``concurrency`` and ``rate_limit`` count every call: the sizes of all images share
        them. ``scales``, ``min_confidence`` and ``match_confidence`` are
        [`find_lookalike`][ncp_cfr.Client.find_lookalike]'s.
        """
        plans = self._lookalike_plans(channel_order, scales, min_confidence, match_confidence)
        return Many(BatchRun(images, concurrency, rate_limit, progress), plans)

    @streaming
    def stream(
        self,
        operation: Operation,
        images: Iterable[ImageInput],
        *,
        concurrency: int = DEFAULT_BATCH_CONCURRENCY,
        rate_limit: float | None = None,
        progress: Progress = False,
        store: ResultStore | str | os.PathLike[str] | None = None,
        max_calls: int | None = None,
        retry_failed: bool = False,
        channel_order: ChannelOrder = "rgb",
        margin: float = DEFAULT_MARGIN,
        min_face: int = DEFAULT_MIN_FACE,
        min_confidence: float = 0.0,
        scales: Sequence[float] = DEFAULT_SCALES,
        match_confidence: float = DEFAULT_MATCH_CONFIDENCE,
    ) -> Many[BatchItem[Any]]:
        """Run one operation over many photos, yielding each [`BatchItem`][ncp_cfr.BatchItem] as
        it finishes; for photo libraries.

        ```python
        with client.stream("face", photos, store="library.db") as results:
            for item in results:           # in the order they finish; item.index is the position
                print(item.source, item.result or item.error)
        print(results.summary)             # answered, from the store, failed, calls paid...
        ```

        Inputs are read lazily (a generator of 100,000 paths is never held whole), at most
        ``2 x concurrency`` at a time. With a ``store``, every answer is saved as it arrives and
        a photo already answered (the same content under any name, with the same options and
        service) is answered from it without a call; a rerun after any stop resumes. A quota
        answer (``QuotaExceededError``), or ``max_calls`` calls spent, stops the run: calls in
        flight finish (and are stored), nothing new is sent, and every photo not sent comes out
        with a [`NotAttempted`][ncp_cfr.NotAttempted] error.

        Args:
            operation: ``"face"`` ([`detect_faces`][ncp_cfr.Client.detect_faces]),
                ``"celebrity"``, ``"analyze"`` or ``"lookalike"`` (``find_lookalike``).
            images: any iterable of images (paths, bytes, file objects, PIL images, arrays).
            concurrency: calls in flight at once.
            rate_limit: at most this many requests per second, retries included.
            progress: ``True`` for a tqdm bar, or a ``callable(done, total)`` (``total`` is 0
                when ``images`` has no length).
            store: a [`ResultStore`][ncp_cfr.store.ResultStore] or the path of its SQLite file
                (created if missing, closed with the stream).
            max_calls: spend at most this many calls (retries included) in this run.
            retry_failed: send again the photos the store remembers as permanently failed
                (unreadable or refused as invalid images).
            channel_order: the channel order of array images.
            margin: ``analyze``'s crop margin.
            min_face: ``analyze``'s smallest face sent for a lookalike.
            min_confidence: ``analyze``'s and ``lookalike``'s lowest name confidence.
            scales: ``lookalike``'s upload sizes.
            match_confidence: ``lookalike``'s match threshold.

        Returns:
            A [`BatchStream`][ncp_cfr.BatchStream] on [`Client`][ncp_cfr.Client] (iterate it; use
            ``with`` to stop early cleanly), an [`AsyncBatchStream`][ncp_cfr.AsyncBatchStream] on
            [`AsyncClient`][ncp_cfr.AsyncClient] (``async with ... as s: async for item in s``).
            Its ``summary`` is final once it is exhausted.

        Raises:
            InvalidArgumentError: an unknown operation, or an option of another operation.
            StoreError: the store cannot be opened or written (before any call).
        """
        plans, options = self._operation(
            operation, channel_order, margin, min_face, min_confidence, scales, match_confidence
        )
        opened = None if store is None or isinstance(store, ResultStore) else ResultStore(store)
        remember = None
        if store is not None:
            remember = StoreOptions(
                store=opened if opened is not None else store,  # type: ignore[arg-type]
                operation=operation,
                options=options,
                base_url=self.base_url,
                retry_failed=retry_failed,
            )
        run = BatchRun(
            images,
            concurrency,
            rate_limit,
            progress,
            store=remember,
            max_calls=max_calls,
            owned_store=opened,
        )
        return Many(run, plans, light_finish=store is None and operation in ("face", "celebrity"))
