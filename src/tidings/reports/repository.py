"""Queries on reports."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.core.errors import Conflict
from tidings.reports.models import Report, ReportStatus

DUPLICATE = "You already reported this, and a moderator has not closed that report yet."


class ReportRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def open_by(self, reporter_id: int, target_type: str, target_id: int) -> Report | None:
        stmt = select(Report).where(
            Report.reporter_id == reporter_id,
            Report.target_type == target_type,
            Report.target_id == target_id,
            Report.status == ReportStatus.OPEN.value,
        )
        return (await self.session.execute(stmt)).scalars().first()

    async def get(self, report_id: int, *, for_update: bool = False) -> Report | None:
        stmt = select(Report).where(Report.id == report_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalars().first()

    async def page(
        self,
        limit: int,
        before_id: int | None,
        *,
        status: ReportStatus | None,
        target_type: str | None,
        target_id: int | None,
    ) -> list[Report]:
        """Newest first, ``limit + 1`` rows (keyset on the id)."""
        stmt = select(Report).order_by(Report.id.desc()).limit(limit + 1)
        if before_id is not None:
            stmt = stmt.where(Report.id < before_id)
        if status is not None:
            stmt = stmt.where(Report.status == status.value)
        if target_type is not None:
            stmt = stmt.where(Report.target_type == target_type)
        if target_id is not None:
            stmt = stmt.where(Report.target_id == target_id)
        return list((await self.session.execute(stmt)).scalars())

    async def open_counts(self) -> list[tuple[str, int, datetime]]:
        """Per target type: how many reports are open, and when the oldest was made (the
        index on (status, id) keeps this to the open rows)."""
        stmt = (
            select(Report.target_type, func.count(), func.min(Report.created_at))
            .where(Report.status == ReportStatus.OPEN.value)
            .group_by(Report.target_type)
        )
        return [(kind, int(n), oldest) for kind, n, oldest in await self.session.execute(stmt)]

    async def add(self, report: Report) -> Report:
        """Insert; a concurrent open report of the same target by the same reporter (the
        partial unique index) is a 409, inside a savepoint so the transaction survives."""
        try:
            async with self.session.begin_nested():
                self.session.add(report)
        except IntegrityError as exc:
            raise Conflict(DUPLICATE) from exc
        return report
