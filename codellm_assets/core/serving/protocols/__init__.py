"""The IDE clients' own wire shapes beside the OpenAI API: Tabby's (tabby-agent), llama.cpp's /infill
(llama.vscode) and Continue's FIM route and model fields. Each converts its request to the gateway's
PromptSpec + GenerationParams and names its protocol in the request log."""

from __future__ import annotations

from codellm_assets.core.serving.protocols import llamacpp, openai_extras, tabby
from codellm_assets.core.serving.protocols.common import Deps


def include_ide_routes(app, deps: Deps) -> None:  # noqa: ANN001 - a FastAPI app
    tabby.include(app, deps)
    llamacpp.include(app, deps)
    openai_extras.include(app, deps)


__all__ = ["Deps", "include_ide_routes", "tabby"]
