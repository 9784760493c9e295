"""Speech synthesis with espeak-ng, for the offline spoken-digit benchmark.

Licence note: espeak-ng is GPL-3. It is NOT a dependency of crsnn: it comes from the optional
extra ``crsnn[data]`` (PyPI ``espeakng-loader==0.2.4``, which bundles libespeak-ng 1.52 and its
voice data) and is loaded dynamically through ``ctypes`` only when speech is synthesized. As a
fallback the system library (Debian ``libespeak-ng1``/``espeak-ng-data``, version 1.51) is used;
the two versions give different audio, so the version is recorded in the files' provenance.

Determinism: espeak-ng draws random numbers (libc ``rand``, seeded here with ``srand`` and its
own ``espeak_ng_SetRandSeed``) and keeps internal state between utterances (e.g. the position in
its pitch-flutter table), so an utterance depends on everything synthesized before it in the
same process. :func:`synthesize_all` therefore runs each batch in a fresh Python process
(``python -m crsnn.train.data.speech``) in a fixed order: the same list of utterances always
gives the same audio.

A batch whose audio cannot be written for lack of room (a full disk under TMPDIR, the file-size
limit ``ulimit -f``) ends in one :class:`~crsnn.atomic_write.WriteError` naming the folder and what
to do, not in the child's traceback.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from crsnn.space_errors import SPACE_ERRNOS, no_temporary_folder, space_error

#: espeak-ng English voices (accents) and the German voice.
ENGLISH_VOICES = (
    "en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
    "en-029", "en-us-nyc",
)
GERMAN_VOICE = "de"
# Variants that do not sound like a human speaker.
_EXCLUDED_VARIANTS = ("robo", "robot", "demonic", "unirobot")

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4


class EspeakUnavailable(RuntimeError):
    """espeak-ng could not be found or loaded."""


@dataclass(frozen=True)
class Utterance:
    """One utterance to synthesize.

    Attributes:
        text: the words (UTF-8).
        voice: espeak-ng voice (language/accent), e.g. ``"en-us"`` or ``"de"``.
        variant: espeak-ng variant (speaker timbre), e.g. ``"m3"``, ``"f2"``, ``"klatt"``; "" = none.
        rate: speaking rate in words per minute (espeak-ng accepts 80..450).
        pitch: base pitch, 0..99.
        pitch_range: pitch range, 0..99.
        seed: seed of espeak-ng's random numbers for this utterance.
    """

    text: str
    voice: str
    variant: str = ""
    rate: int = 175
    pitch: int = 50
    pitch_range: int = 50
    seed: int = 0


def _locate() -> tuple[str, str | None, str]:
    """(library path, data path or None for the system default, source description)."""
    try:
        import espeakng_loader  # type: ignore[import-not-found]

        return espeakng_loader.get_library_path(), espeakng_loader.get_data_path(), "espeakng-loader"
    except ImportError:
        pass
    name = ctypes.util.find_library("espeak-ng")
    if name:
        return name, None, "system"
    raise EspeakUnavailable(
        "espeak-ng not found: install the optional extra (pip install 'espeakng-loader==0.2.4', "
        "or `pip install -e .[data]`), or the Debian packages libespeak-ng1 and espeak-ng-data"
    )


def list_variants(data_path: str | None = None) -> list[str]:
    """Names of the installed espeak-ng voice variants, sorted (minus robot-like ones and names
    with spaces).
    Reads the data directory only; does not load the library."""
    if data_path is None:
        data_path = _locate()[1]
    candidates = [data_path] if data_path else [
        "/usr/lib/x86_64-linux-gnu/espeak-ng-data", "/usr/share/espeak-ng-data",
        "/usr/lib/espeak-ng-data",
    ]
    for base in candidates:
        vdir = Path(base, "voices", "!v")
        if vdir.is_dir():
            names = [p.name for p in vdir.iterdir() if p.is_file()]
            return sorted(n for n in names
                          if " " not in n and not any(x in n.lower() for x in _EXCLUDED_VARIANTS))
    raise EspeakUnavailable(f"no espeak-ng voice variants found in {candidates}")


class Espeak:
    """A loaded espeak-ng library (one per process; see the module docstring about state)."""

    def __init__(self) -> None:
        lib_path, data_path, source = _locate()
        try:
            lib = ctypes.CDLL(lib_path)
        except OSError as exc:
            raise EspeakUnavailable(f"cannot load {lib_path}: {exc}") from exc
        self._libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode() if data_path else None, 0
        )
        if rate <= 0:
            raise EspeakUnavailable(f"espeak_Initialize failed ({rate}) with data at {data_path}")
        self.sample_rate = int(rate)
        self.version = lib.espeak_Info(None).decode()
        self.source = source
        self.library_path = lib_path
        self.data_path = data_path
        self._lib = lib
        self._has_seed = hasattr(lib, "espeak_ng_SetRandSeed")
        if self._has_seed:
            lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self._chunks: list[np.ndarray] = []
        proto = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

        def _collect(wav, n, _events):  # called by espeak-ng with each block of samples
            if n > 0:
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        self._callback = proto(_collect)  # keep a reference: espeak-ng holds the pointer
        lib.espeak_SetSynthCallback(self._callback)

    def variants(self) -> list[str]:
        """Names of the installed voice variants (see :func:`list_variants`)."""
        return list_variants(self.data_path)

    def synthesize(self, u: Utterance) -> np.ndarray:
        """Audio of one utterance: int16, shape ``(n_samples,)``, at :attr:`sample_rate` Hz."""
        lib = self._lib
        name = f"{u.voice}+{u.variant}" if u.variant else u.voice
        if lib.espeak_SetVoiceByName(name.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {name!r}")
        lib.espeak_SetParameter(_PARAM_RATE, int(np.clip(u.rate, 80, 450)), 0)
        lib.espeak_SetParameter(_PARAM_PITCH, int(np.clip(u.pitch, 0, 99)), 0)
        lib.espeak_SetParameter(_PARAM_RANGE, int(np.clip(u.pitch_range, 0, 99)), 0)
        lib.espeak_SetParameter(_PARAM_VOLUME, 100, 0)
        self._libc.srand(ctypes.c_uint(u.seed & 0xFFFFFFFF))
        if self._has_seed:
            lib.espeak_ng_SetRandSeed(u.seed & 0x7FFFFFFF)
        self._chunks = []
        text = u.text.encode("utf-8")
        err = lib.espeak_Synth(text, len(text) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed ({err}) for {u}")
        lib.espeak_Synchronize()
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        self._chunks = []
        return audio.astype(np.int16, copy=False)


def espeak_info(es: Espeak | None = None) -> dict:
    """Version, sample rate and origin of the espeak-ng that is used (loads it in-process when
    ``es`` is None: do not synthesize in that process afterwards if you need determinism)."""
    es = es or Espeak()
    return {
        "synthesizer": "espeak-ng",
        "version": es.version,
        "source": es.source,
        "sample_rate": es.sample_rate,
        "library": os.path.basename(es.library_path),
    }


def synthesize_all(utterances: Sequence[Utterance]) -> tuple[list[np.ndarray], dict]:
    """Synthesize ``utterances`` in order in a fresh Python process (deterministic, see above).

    Returns:
        (audio, info): int16 arrays at ``info["sample_rate"]`` Hz, and :func:`espeak_info`.

    Raises:
        EspeakUnavailable: espeak-ng is missing (the child's message is passed on).
        crsnn.atomic_write.WriteError: no room for the audio in the temporary folder (full disk,
            file-size limit).
        RuntimeError: the child failed otherwise (its last line of output).
    """
    try:
        base = tempfile.gettempdir()
    except FileNotFoundError as e:  # no folder accepts tempfile's 4-byte probe (e.g. ulimit -f 0)
        raise no_temporary_folder(e) from None
    try:
        with tempfile.TemporaryDirectory(prefix="crsnn-espeak-") as tmp:
            src, dst = Path(tmp, "in.json"), Path(tmp, "out.npz")
            src.write_text(json.dumps([asdict(u) for u in utterances]))
            proc = subprocess.run(
                [sys.executable, "-m", "crsnn.train.data.speech", str(src), str(dst)],
                capture_output=True, text=True,
            )
            if proc.returncode != 0:
                msg = proc.stderr.strip().splitlines()
                last = msg[-1] if msg else f"exit status {proc.returncode}"
                if "EspeakUnavailable" in last:
                    raise EspeakUnavailable(last.split(":", 1)[-1].strip())
                no_room = [line for line in msg if line.startswith(_NO_ROOM)]
                if no_room:
                    code = int(no_room[-1][len(_NO_ROOM):].split()[0])
                    raise OSError(code, os.strerror(code), str(dst))
                raise RuntimeError(f"espeak-ng synthesis process failed: {last}")
            with np.load(dst) as z:
                flat, offsets = z["audio"], z["offsets"]
                info = json.loads(str(z["info"]))
    except OSError as e:
        if e.errno in SPACE_ERRNOS:
            raise space_error(f"the synthesized speech to the temporary folder {base}", e.errno,
                              "set TMPDIR to a folder with room") from None
        raise
    audio = [flat[offsets[i]:offsets[i + 1]].copy() for i in range(len(offsets) - 1)]
    return audio, info


#: The child's last line when its audio could not be written for lack of room: ``PREFIX ERRNO``.
_NO_ROOM = "crsnn-speech: no room to write: errno "


def _main(argv: Sequence[str]) -> None:
    """Child process: ``python -m crsnn.train.data.speech IN.json OUT.npz``."""
    src, dst = argv
    utterances = [Utterance(**d) for d in json.loads(Path(src).read_text())]
    es = Espeak()
    audio = [es.synthesize(u) for u in utterances]
    offsets = np.zeros(len(audio) + 1, dtype=np.int64)
    np.cumsum([a.size for a in audio], out=offsets[1:])
    flat = np.concatenate(audio) if audio else np.zeros(0, np.int16)
    np.savez(dst, audio=flat, offsets=offsets, info=json.dumps(espeak_info(es)))


def _child_main(argv: Sequence[str]) -> None:
    """:func:`_main`; a write that fails for lack of room ends the child with one line,
    ``_NO_ROOM + errno``, that :func:`synthesize_all` turns into its error."""
    try:
        _main(argv)
    except OSError as exc:
        if exc.errno not in SPACE_ERRNOS:
            raise
        print(f"{_NO_ROOM}{exc.errno}", file=sys.stderr, flush=True)  # the parent words the error
        # at once: the half-written archive's finalizer would retry the write and print a traceback
        os._exit(1)


if __name__ == "__main__":
    _child_main(sys.argv[1:])
