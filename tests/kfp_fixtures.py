"""What the Kubeflow test modules share: compiled packages (each compiled once per session, on first
use) and a fake KFP v2beta1 API on 127.0.0.1 that records the requests kfp.Client makes. Import the
fixtures by name into a test module: `from collabopt.tests.kfp_fixtures import kfp_api, packages`."""
import http.server
import json
import os
import threading
import urllib.parse

import pytest
import yaml

from collabopt.kubeflow import compiler
from collabopt.pipelines import config as tree_config

ROOT = "gs://collabopt-test/root"  # what the packages are compiled for; local runs override it
DEMO_CONFIG = os.path.join(tree_config.CONFIG_DIR, "demo.yaml")


def demo_raw():
    with open(DEMO_CONFIG) as f:
        return yaml.safe_load(f)


# The demo's tree on small data, its blessed leaves pushed (packages["run"] pushes to a fresh folder):
# its PCQAT path and the PTQ leaf it is judged against, one NPU target (each task is a fresh
# process: the demo's third leaf and second target would add 7 tasks' work and test nothing more). A
# size requirement instead of the demo's accuracy one (noisy on 300 images) blesses the PCQAT leaf and
# not the PTQ one, so both branches of the push conditions run.
RUN_CONFIG = {**demo_raw(), "name": "collabopt-kfp-test", "paths": ["ptq", "prune_cluster_pcqat"],
              "data": {"train_limit": 2000, "eval_limit": 300}, "prune": {"target_sparsity": 0.5, "epochs": 1},
              "npu": {"targets": ["ethos-u55-128"]}, "requirements": {"max_gzip_bytes": 24000}}
# Production: retraining from what a Pusher deployed, on Examples at a URI, pushing blessed leaves;
# resources per task (default, by component class, by node id), node selectors, caching, service account.
PROD_CONFIG = {**demo_raw(), "name": "collabopt-prod", "baseline": {"pushed_models": "gs://collabopt-test/serving"},
               "examples": {"uri": "gs://collabopt-test/examples"}, "push": {"destination": "gs://collabopt-test/edge"},
               "kubeflow": {"resources": {
                   "default": {"cpu": "1", "memory": "4Gi", "node_selector": {"pool": "cpu"}},
                   "PreservingQAT": {"cpu": "4", "memory": "16Gi", "memory_limit": "20Gi",
                                     "accelerator": {"type": "nvidia.com/gpu", "count": 1},
                                     "node_selector": {"pool": "gpu"}},
                   "Evaluate_prune_cluster_pcqat": {"cpu": "500m"}},
                   "service_account": "collabopt-runner", "enable_caching": True}}
_CONFIGS = {"demo": lambda _: demo_raw(), "all": lambda _: tree_config.load("all_paths"), "prod": lambda _: PROD_CONFIG,
            "run": lambda factory: {**RUN_CONFIG, "push": {"destination": str(factory.mktemp("pushed"))}}}


def compile_config(config, path, **kw):
    """The PipelineSpec dict of `config` compiled for ROOT to the package `path` as `collabopt compile`
    does it (pipeline parameters, the kubeflow section); local paths allowed (the tests run here)."""
    return compiler.compile_config(config, str(path), pipeline_root=ROOT, allow_local_paths=True, **kw)


def spec_of(package, document=0):
    """The PipelineSpec of a package (document 1: its platform spec)."""
    with open(package) as f:
        return list(yaml.safe_load_all(f))[document]


_ONCE = {}


def _once(key, build):
    """build() once per session: pytest makes one fixture definition per module importing a fixture,
    so scope="session" alone would compile again in each of them."""
    if key not in _ONCE:
        _ONCE[key] = build()
    return _ONCE[key]


class _Packages:
    """packages[key] -> (path, PipelineSpec dict) for key in demo, run, all, prod; compiled on first use."""

    def __init__(self, tmp_path_factory):
        self._factory = tmp_path_factory

    def __getitem__(self, key):
        def build():
            path = self._factory.mktemp("kfp") / f"{key}.yaml"
            return str(path), compile_config(_CONFIGS[key](self._factory), path)
        return _once(("package", key), build)


@pytest.fixture(scope="session")
def packages(tmp_path_factory):
    return _Packages(tmp_path_factory)


@pytest.fixture(scope="session")
def param_package(tmp_path_factory):
    """A pipeline with a RuntimeParameter (an Importer's source uri): root parameters for --param."""
    def build():
        from tfx.dsl.components.common import importer
        from tfx.orchestration import data_types, pipeline
        from tfx.types import standard_artifacts
        uri = data_types.RuntimeParameter(name="model_uri", ptype=str, default="gs://collabopt-test/model")
        imp = importer.Importer(source_uri=uri, artifact_type=standard_artifacts.Model).with_id("ModelImporter")
        path = str(tmp_path_factory.mktemp("kfp_params") / "params.yaml")
        compiler.compile_pipeline(pipeline.Pipeline(pipeline_name="params-test", pipeline_root=ROOT,
                                                    components=[imp]), path, image="registry.example/collabopt:x")
        return path
    return _once("param_package", build)


# ---------------------------------------------------------------------- kfp.Client against a fake API

class FakeKfp(http.server.ThreadingHTTPServer):
    """Answers the KFP v2beta1 REST endpoints kfp.Client 2.16 calls and records every request. `script`
    makes a route misbehave: {(method, path): HANG | GARBAGE | (status, content type, body bytes)}.
    `multi_user`: what the health check says."""
    daemon_threads = True  # a hanging handler never keeps the test process alive

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests, self.experiments, self.script, self.multi_user = [], [], {}, False
        self.release = threading.Event()  # ends every hang (set at teardown)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def posted(self, path):
        return [r["body"] for r in self.requests if r["method"] == "POST" and r["path"] == path]


HANG, GARBAGE = "hang", "garbage"  # never answer (until teardown, at most 60 s); bytes that are not HTTP
HANG_LIMIT = 60.0


def drip(every):
    """A behaviour: a valid JSON answer, sent one byte every `every` seconds (until teardown)."""
    return ("drip", every)


def huge(size, announced=True):
    """A behaviour: a 200 JSON answer of `size` bytes (a Content-Length given, or not: the body ends
    when the connection closes), sent as fast as the client reads."""
    return ("huge", size, announced)


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _answer(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _misbehave(self, behaviour):
        self.close_connection = True
        if behaviour == HANG:
            self.server.release.wait(HANG_LIMIT)
        elif behaviour == GARBAGE:
            self.wfile.write(b"\x00\xff\xfe not HTTP\r\n\r\n")
        elif behaviour[0] == "drip":
            data = b'{"multi_user": false}'
            answer = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
                len(data), data)
            try:
                for i in range(len(answer)):
                    self.wfile.write(answer[i:i + 1])
                    self.wfile.flush()
                    if self.server.release.wait(behaviour[1]):
                        return
            except OSError:  # the client cut it
                pass
        elif behaviour[0] == "huge":
            _, size, announced = behaviour
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if announced:
                self.send_header("Content-Length", str(size))
            self.end_headers()
            block = b" " * (1 << 20)
            try:
                for sent in range(0, size, len(block)):
                    self.wfile.write(block[:size - sent])
            except OSError:  # the client stopped reading
                pass
        else:
            status, content_type, data = behaviour
            self._answer(status, data, content_type)

    def _handle(self, method):
        srv, url = self.server, urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        srv.requests.append({"method": method, "path": url.path, "query": query, "body": body,
                             "authorization": self.headers.get("Authorization")})
        if (method, url.path) in srv.script:
            return self._misbehave(srv.script[(method, url.path)])
        now = "2026-11-27T03:00:00Z"
        api = "/apis/v2beta1/"
        if (method, url.path) == ("GET", api + "healthz"):
            return self._answer(200, {"multi_user": srv.multi_user, "pipeline_store": "database"})
        if (method, url.path) == ("GET", api + "experiments"):
            preds = json.loads(query.get("filter", "{}")).get("predicates", [])
            hits = [e for e in srv.experiments if all(e.get(p["key"]) == p.get("stringValue") for p in preds)
                    and e.get("namespace") == query.get("namespace")]
            return self._answer(200, {"experiments": hits, "total_size": len(hits)} if hits else {})
        if (method, url.path) == ("POST", api + "experiments"):
            exp = {"experiment_id": f"exp-{len(srv.experiments) + 1}", "display_name": body["display_name"],
                   "created_at": now, **({"namespace": body["namespace"]} if body.get("namespace") else {})}
            srv.experiments.append(exp)
            return self._answer(200, exp)
        if (method, url.path) == ("POST", api + "runs"):
            return self._answer(200, {**body, "run_id": f"run-{len(srv.posted(url.path))}", "state": "PENDING",
                                      "created_at": now})
        if (method, url.path) == ("POST", api + "recurringruns"):
            return self._answer(200, {**body, "recurring_run_id": f"rr-{len(srv.posted(url.path))}",
                                      "status": "ENABLED", "created_at": now})
        return self._answer(404, {"error": "Not Found", "code": 5, "message": f"no route {method} {url.path}"})

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")


@pytest.fixture
def kfp_api():
    srv = FakeKfp()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()
    thread.join(5)
