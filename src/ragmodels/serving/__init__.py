"""HTTP serving of a RagPipeline (FastAPI + uvicorn, the ``serve`` extra): ``ragmodels serve``.

    from ragmodels.serving import ServerSettings, create_app
    app = create_app(lambda: RagPipeline.from_pretrained("my_model", index="my_kb"), ServerSettings())

Importing this package without the extra raises ImportError naming it.
"""

try:
    import fastapi  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as err:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "Serving needs FastAPI and uvicorn, from the serve extra: pip install 'ragmodels[serve]'"
    ) from err

from .app import create_app
from .server import BackgroundServer, serve
from .settings import ServerSettings

__all__ = ["BackgroundServer", "ServerSettings", "create_app", "serve"]
