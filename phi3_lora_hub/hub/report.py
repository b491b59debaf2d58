"""``HubPushReport``: which checkpoints reached the Hub, which did not, and why. Returned in ``TrainResult.hub``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

PushStatus = Literal["pending", "pushed", "failed", "skipped", "unfinished"]


@dataclass
class CheckpointPush:
    """The fate of one staged checkpoint (or of the final adapter)."""

    step: int
    final: bool = False
    status: PushStatus = "pending"
    """``pushed``: on ``main`` (and its branch); ``failed``: gave up, see ``error``; ``skipped``: a newer checkpoint
    was saved before this one could be pushed (only its branch is missing); ``unfinished``: the flush deadline came
    first."""
    branch: str | None = None
    commit: str | None = None
    """The commit on ``main`` that holds this checkpoint."""
    branch_commit: str | None = None
    """The head of ``branch`` after the push (differs from ``commit`` when resumable state was added)."""
    resumable: bool = False
    """The resumable state and its completion marker reached the branch."""
    error: str | None = None
    attempts: int = 0
    seconds: float = 0.0
    kept_at: Path | None = None
    """The staged files, kept when the push did not complete, so it can be pushed again by hand."""
    with_final: bool = False
    """This last checkpoint was pushed together with the final adapter of the same step (one commit)."""

    @property
    def label(self) -> str:
        return f"final adapter (step {self.step})" if self.final else f"step {self.step}"

    def line(self) -> str:
        if self.status == "pushed":
            where = "main" + (f" + {self.branch}" if self.branch and not self.final else "")
            extra = (", resumable" if self.resumable else "") + (", with the final adapter" if self.with_final else "")
            return f"{self.label}: pushed to {where} (commit {str(self.commit)[:10]}{extra})"
        if self.status == "skipped":
            # Not "a newer one was pushed instead": the newer one may have failed too (its own line says).
            return f"{self.label}: skipped, {self.error or 'a newer checkpoint was saved before it could be pushed'}"
        reason = f": {self.error}" if self.error else ""
        return f"{self.label}: {self.status}{reason}"


@dataclass
class HubPushReport:
    """Everything the push callback did, in the order checkpoints were saved."""

    repo_id: str
    repo_url: str
    pushes: list[CheckpointPush] = field(default_factory=list)

    @property
    def pushed(self) -> list[CheckpointPush]:
        return [push for push in self.pushes if push.status == "pushed"]

    @property
    def failed(self) -> list[CheckpointPush]:
        """Pushes that did not reach the Hub: failed, or cut by the flush deadline."""
        return [push for push in self.pushes if push.status in ("failed", "unfinished", "pending")]

    @property
    def skipped(self) -> list[CheckpointPush]:
        return [push for push in self.pushes if push.status == "skipped"]

    @property
    def newest(self) -> CheckpointPush | None:
        """The last thing staged: what ``main`` should hold."""
        return self.pushes[-1] if self.pushes else None

    @property
    def ok(self) -> bool:
        """True when the newest staged checkpoint reached ``main`` and nothing failed."""
        return not self.failed and (self.newest is None or self.newest.status == "pushed")

    @property
    def main_commit(self) -> str | None:
        """The commit of the newest push that reached ``main``."""
        return next((push.commit for push in reversed(self.pushes) if push.status == "pushed"), None)

    def summary(self) -> str:
        """A multi-line account for logs: one line per checkpoint, then what to do about failures."""
        head = f"Hub pushes to {self.repo_url}: {len(self.pushed)} pushed"
        head += f", {len(self.skipped)} skipped" if self.skipped else ""
        head += f", {len(self.failed)} not pushed" if self.failed else ""
        lines = [head, *(f"  {push.line()}" for push in self.pushes)]
        newest = self.newest
        if newest is not None and newest.status != "pushed":
            again = (
                f"phi3-lora-hub push {newest.kept_at / 'adapter'} --repo-id {self.repo_id}" if newest.kept_at else ""
            )
            branch = f" --branch {newest.branch}" if again and newest.branch else ""
            lines.append(
                "  The Hub does not hold the newest checkpoint."
                + (f" Once the Hub is reachable, push it with: {again}{branch}" if again else "")
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        steps = ", ".join(push.label for push in self.pushed) or "nothing"
        text = f"{self.repo_url}: pushed {steps}"
        if self.failed:
            text += "; NOT pushed: " + ", ".join(push.label for push in self.failed)
        return text
