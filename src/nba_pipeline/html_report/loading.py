"""Reading the artifacts of one run directory."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

from ..errors import InputDataError

logger = logging.getLogger(__package__)


class RunArtifacts:
    """Reads the artifacts of one run directory; an absent file reads as nothing."""

    def __init__(self, run: Path) -> None:
        self.run = run
        self.report: dict = self._json(run / "reports" / "pipeline_report.json") or {}

    def section(self, name: str) -> dict:
        value = self.report.get(name)
        return value if isinstance(value, dict) else {}

    def csv(self, relative: str) -> list[dict[str, str]] | None:
        path = self.run / relative
        if not path.is_file():
            return None
        try:
            with path.open(newline="", encoding="utf-8") as stream:
                return list(csv.DictReader(stream))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise InputDataError(f"cannot read {path}: {exc}") from None

    def jsonl(self, relative: str) -> list[dict] | None:
        path = self.run / relative
        if not path.is_file():
            return None
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
            return [json.loads(line) for line in lines if line.strip()]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputDataError(f"cannot read {path}: {exc}") from None

    def png(self, relative: str) -> bytes | None:
        path = self.run / relative
        if not path.is_file():
            return None
        data = path.read_bytes()
        if not data.startswith(b"\x89PNG\r\n\x1a\n"):
            logger.warning("%s is not a PNG image; left out of the report", path)
            return None
        return data

    @staticmethod
    def _json(path: Path) -> dict | None:
        if not path.is_file():
            logger.warning("%s is absent: the report shows only the tables and images", path)
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputDataError(f"cannot read {path}: {exc}") from None
        if not isinstance(data, dict):
            raise InputDataError(f"{path} does not hold a JSON object")
        return data
