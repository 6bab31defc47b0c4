"""GET /dashboard (the page) and /dashboard/static/* (its scripts and styles).

The page holds no data: it is public, like the health probes, and every
figure it shows comes from the authorised /api/v1 routes, called from the
browser with the user's API token. A strict Content-Security-Policy keeps
the page to this origin: no CDN, no inline script, no request elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from ..authz import PUBLIC, authorize

STATIC_DIR = Path(__file__).resolve().parent / "static"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}

router = APIRouter(tags=["dashboard"])


@router.get("/dashboard", response_class=HTMLResponse, dependencies=[authorize(PUBLIC)])
def dashboard() -> HTMLResponse:
    """The dashboard's single page (log in with an API token; data comes from /api/v1)."""
    return HTMLResponse((STATIC_DIR / "index.html").read_text(encoding="utf-8"), headers=HEADERS)


router.mount("/dashboard/static", StaticFiles(directory=STATIC_DIR), name="dashboard-static")
