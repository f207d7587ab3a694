"""The OpenAPI schema a client reads at /api/schema/, and Swagger UI over it at /api/docs/:
every route and method of the API is in it, every parameter and error is described, the docs
load nothing from another site, and the fields it names are the ones the API answers."""

from __future__ import annotations

import re

import pytest
import yaml
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.urls import URLResolver, get_resolver

ERROR_REF = "#/components/schemas/Error"
UNDOCUMENTED = {"api/", "api/schema/", "api/docs/"}  # the router's index, the schema, the docs


@pytest.fixture(scope="module")
def schema(django_db_setup, django_db_blocker):
    from rest_framework.test import APIClient

    with django_db_blocker.unblock():
        answer = APIClient().get("/api/schema/")
    assert answer.status_code == 200, answer.content[:500]
    assert answer["Content-Type"].startswith("application/vnd.oai.openapi")
    return yaml.safe_load(answer.content)


def operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield path, method.upper(), operation


def served_routes() -> dict[str, set[str]]:
    """Every route of the API and of /o/ with its methods, from the URL configuration, as
    OpenAPI paths: ``/api/processes/{id}/events/`` -> {"GET"}."""
    routes: dict[str, set[str]] = {}

    def walk(patterns, prefix=""):
        for pattern in patterns:
            route = prefix + str(pattern.pattern).lstrip("^").rstrip("$")
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
                continue
            if not route.startswith(("api/", "o/")) or route in UNDOCUMENTED:
                continue
            if "format" in pattern.pattern.regex.pattern:  # DRF's .json suffix variants
                continue
            path = "/" + re.sub(r"\(\?P<(\w+)>[^)]*\)|<(?:\w+:)?(\w+)>",
                                lambda m: "{%s}" % (m[1] or m[2]), route)
            path = path.replace("{pk}", "{id}")  # drf-spectacular names a primary key "id"
            routes[path] = methods_of(pattern.callback)

    walk(get_resolver().url_patterns)
    return routes


def methods_of(callback) -> set[str]:
    if getattr(callback, "actions", None):  # a viewset's route (HEAD: GET without a body)
        return {method.upper() for method in callback.actions} - {"HEAD"}
    view = callback.view_class
    return {m.upper() for m in view.http_method_names
            if hasattr(view, m) and m not in ("options", "head")}


def test_the_schema_is_valid_openapi_3_generated_without_a_warning(tmp_path):
    # --fail-on-warn: a view drf-spectacular cannot describe fails here, not in a client.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", tmp_path / "s.yaml")
    assert yaml.safe_load((tmp_path / "s.yaml").read_text())["openapi"].startswith("3.")


def test_every_route_and_method_served_is_in_the_schema(schema):
    routes = served_routes()
    assert "/api/processes/{id}/stop/" in routes, routes
    assert "/o/token/" in routes, routes
    documented = {path: {m.upper() for m in item} for path, item in schema["paths"].items()}
    assert documented == routes


def test_every_operation_and_parameter_is_described(schema):
    for path, method, operation in operations(schema):
        assert operation.get("summary"), f"{method} {path} has no summary"
        for parameter in operation.get("parameters", []):
            assert parameter.get("description"), f"{method} {path}: {parameter['name']}"
    listing = schema["paths"]["/api/processes/"]["get"]["parameters"]
    assert {p["name"] for p in listing} == {
        "state", "pipeline", "created_after", "created_before", "finished_after",
        "id_prefix", "page", "page_size"}
    logs = schema["paths"]["/api/processes/{id}/logs/"]["get"]["parameters"]
    assert {p["name"]: p["schema"].get("minimum") for p in logs if p["in"] == "query"} == {
        "offset": 0}
    create = schema["paths"]["/api/processes/"]["post"]["parameters"]
    assert [p["name"] for p in create if p["in"] == "header"] == ["Idempotency-Key"]


def test_every_error_answer_of_the_api_is_the_one_error_shape(schema):
    shape = schema["components"]["schemas"]["Error"]
    assert set(shape["required"]) == {"status", "code", "detail"}
    for path, method, operation in operations(schema):
        if not path.startswith("/api/"):
            continue
        statuses = {int(code) for code in operation["responses"]}
        if path != "/api/health/":  # needs no token
            assert {401, 403, 429} <= statuses, f"{method} {path}"
        if "{" in path:
            assert 404 in statuses, f"{method} {path}"
        for code, response in operation["responses"].items():
            if int(code) >= 400 and not (path == "/api/health/" and code == "503"):
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref == ERROR_REF, f"{method} {path} {code}"
    create = schema["paths"]["/api/processes/"]["post"]["responses"]
    assert {"400", "413", "422"} <= set(create)


def test_a_token_is_described_as_the_client_credentials_flow_at_o_token(schema):
    scheme = schema["components"]["securitySchemes"]["oauth2"]
    flow = scheme["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == "/o/token/"
    assert set(flow["scopes"]) == {"read", "write"}
    for path, method, operation in operations(schema):
        if path.startswith("/api/") and path != "/api/health/":
            scope = "read" if method == "GET" else "write"
            assert {"oauth2": [scope]} in operation["security"], f"{method} {path}"
    assert {} in schema["paths"]["/api/health/"]["get"]["security"]  # no token needed
    token = schema["paths"]["/o/token/"]["post"]
    form = token["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    assert form["properties"]["grant_type"]["enum"] == ["client_credentials"]


@pytest.mark.django_db  # the throttle counts the request in the database
def test_swagger_ui_is_served_from_this_server_with_no_cdn(client):
    page = client.get("/api/docs/")
    assert page.status_code == 200
    assert page["Content-Type"].startswith("text/html")
    html = page.content.decode()
    urls = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert urls, urls
    assert not [u for u in urls if re.match(r"(https?:)?//", u)], urls
    scripts = [u for u in urls if u.endswith(".js")]
    assert any("swagger-ui-bundle" in u for u in scripts), urls
    for url in scripts:  # each file is shipped by drf-spectacular-sidecar, collected by us
        assert finders.find(url.split("/static/", 1)[1]), url
    assert "/api/schema/" in html


@pytest.mark.django_db
def test_the_fields_the_schema_names_are_the_fields_the_api_answers(schema, api):
    created = api.post("/api/processes/", {"pipeline": "hello", "used_config": {"name": "Ada"}},
                       format="json")
    assert created.status_code == 201, created.content
    pid = created.json()["id"]
    components = schema["components"]["schemas"]
    answers = {
        "Process": api.get("/api/processes/").json()["results"][0],
        "ProcessDetail": api.get(f"/api/processes/{pid}/").json(),
        "ProcessStatus": api.get(f"/api/processes/{pid}/status/").json(),
        "ProcessEvent": api.get(f"/api/processes/{pid}/events/").json()[0],
        "LogChunk": api.get(f"/api/processes/{pid}/logs/").json(),
        "Pipeline": api.get("/api/pipelines/").json()[0],
        "PipelineDetail": api.get("/api/pipelines/hello/").json(),
    }
    for name, answer in answers.items():
        assert set(answer) == set(components[name]["properties"]), name
    event = components["ProcessEvent"]["properties"]
    assert set(event) == {"from", "to", "time", "recorded_at", "source", "detail", "attempt"}
    attempt = components["ProcessAttempt"]["properties"]
    assert set(attempt) == set(answers["ProcessDetail"]["attempts"][0])
    refused = api.post("/api/processes/", {"pipeline": "no-such-pipeline"}, format="json")
    assert refused.status_code == 400
    assert set(components["Error"]["required"]) <= set(refused.json())
