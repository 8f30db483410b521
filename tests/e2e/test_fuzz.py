"""The API against its own OpenAPI document: schemathesis fuzzes every operation of the running
platform, and the document must name every route the gateway serves.

What the fuzz asserts (docs/testing.md): no 5xx; every 4xx is `{code, message, param}`
(tests/e2e/fuzz_checks.py); status codes, content types, headers and bodies conform to the document;
no answer without a valid key where one is needed; created records can be followed through the
document's links (create -> retrieve -> modify -> delete) and a deleted one is gone.
Two checks are off on purpose:
- positive_data_acceptance: the document cannot state every rule (a cursor must be one the API
  issued, a data source must exist, cross-field rules), so schema-valid requests may rightly be 4xx;
- negative_data_rejection: unknown query parameters and body keys are ignored, as ChartMogul does and
  the official client relies on, so "invalid" requests with extra keys rightly succeed;
- allow_header_conformance: `Allow` on a 405 lists what the server routes, and e.g. PATCH
  /v1/customers/find is routed (to /v1/customers/{uuid} with uuid "find"), which the document lists
  under another path.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR
from nameko.web.handlers import HttpRequestHandler

from gateway.service import GatewayService

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_PER_OPERATION = int(os.environ.get("FUZZ_EXAMPLES", "10"))
FUZZ_SEED = os.environ.get("FUZZ_SEED", "1")  # fixed, so a failure reproduces; change it to explore
# Routes outside the API, deliberately not in its document: the web page and the operators' probes.
NOT_API = ("/app/", "/healthz", "/readyz", "/metrics")


def served_routes():
    """(METHOD, /path/{param}) of every HTTP route registered on the gateway, whatever its kind."""
    for name in dir(GatewayService):
        for extension in getattr(getattr(GatewayService, name), ENTRYPOINT_EXTENSIONS_ATTR, ()):
            if isinstance(extension, HttpRequestHandler):
                path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", extension.url)
                for method in extension.method.split(","):
                    yield method.upper(), path


def test_the_document_names_every_route_the_gateway_serves(http):
    document = http.get("/v1/openapi.json", role=None).json()
    documented = {(method.upper(), path) for path, operations in document["paths"].items() for method in operations}
    routes = set(served_routes())
    assert len(routes) > 50  # the enumeration itself works
    missing = sorted(route for route in routes if not route[1].startswith(NOT_API) and route not in documented)
    assert not missing, f"routes the gateway serves that /v1/openapi.json does not describe: {missing}"
    unknown = sorted(route for route in documented if route not in routes)
    assert not unknown, f"operations in the document that no route serves: {unknown}"


@pytest.mark.timeout(400)
def test_fuzzing_every_operation_breaks_no_promise(gateway_url, fuzz_key, tmp_path):
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run", f"{gateway_url}/v1/openapi.json",
        "--auth", f"{fuzz_key}:",
        "--max-examples", str(EXAMPLES_PER_OPERATION), "--seed", FUZZ_SEED,
        "--checks", "all",
        "--exclude-checks", "positive_data_acceptance,negative_data_rejection,allow_header_conformance",
        "--request-timeout", "10", "--max-failures", "50",
        # one worker: with two threads, CPython 3.11's ast.parse (which hypothesis calls to describe
        # strategies) fails at random with "AST constructor recursion depth mismatch" (CPython gh-106905)
        "--workers", "1",
        "--generation-database", "none", "--no-color", "--output-truncate", "true",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.e2e.fuzz_checks",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=380)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        failures = output.partition("=== FAILURES ===")[2] or output.partition("=== ERRORS ===")[2] or output
        pytest.fail(f"schemathesis found broken promises (exit {result.returncode}):\n{failures[-12000:]}",
                    pytrace=False)
    assert "Tested:" in output, output[-3000:]
