"""`collabopt compile | submit | schedule`: Kubeflow Pipelines packages and runs."""


def add_parsers(sub):
    c = sub.add_parser("compile", help="compile a config to a Kubeflow Pipelines (v2) package")
    c.add_argument("config", help="a YAML config, or a packaged one: demo, all_paths")
    c.add_argument("--output", "-o", required=True, help="the package, e.g. pipeline.yaml")
    c.add_argument("--image", default=None, help="the component image (default collabopt:<version>)")
    c.add_argument("--pipeline-root", default=None, help="e.g. gs://bucket/root (default root of its runs)")
    c.add_argument("--allow-local-paths", action="store_true",
                   help="accept model_uri, examples.uri, pushed_models, push.destination without a scheme "
                        "(paths in the image or a mounted volume)")
    c.add_argument("--search", action="store_true",
                   help="the first round of the config's search: its trials as parallel tasks")
    c.set_defaults(func=compile_config)
    s = _kfp_args(sub, "submit", "run a compiled package once on Kubeflow Pipelines", submit)
    s.add_argument("--run-name", default=None)
    s = _kfp_args(sub, "schedule", "run a compiled package on a cron (a KFP recurring run)", schedule)
    s.add_argument("--cron", required=True, help="6 fields, seconds first: '0 0 3 * * *' is 03:00 daily")
    s.add_argument("--max-concurrency", type=int, default=1)
    s.add_argument("--name", default=None, help="the recurring run's name")


def compile_config(args):
    from collabopt.kubeflow import compiler
    from collabopt.pipelines import config as tree_config

    cfg = tree_config.load(args.config)
    compiler.compile_config(cfg, args.output, image=args.image, pipeline_root=args.pipeline_root,
                            allow_local_paths=args.allow_local_paths, search=args.search)
    print(f"wrote {args.output} ({cfg['name']}, image {args.image or compiler.default_image()})")


def _connection(args):
    return {"namespace": args.namespace, "service_account": args.service_account, "timeout": args.timeout,
            "token_file": args.token_file, "ssl_ca_cert": args.ca_cert}


def submit(args):
    from collabopt.kubeflow import client
    run_id = client.submit(args.package, args.host, experiment=args.experiment, params=args.param,
                           pipeline_root=args.pipeline_root, run_name=args.run_name, **_connection(args))
    print(f"submitted run {run_id} to {args.host}")


def schedule(args):
    from collabopt.kubeflow import client
    job_id = client.schedule(args.package, args.host, args.cron, max_concurrency=args.max_concurrency,
                             experiment=args.experiment, params=args.param, name=args.name,
                             pipeline_root=args.pipeline_root, **_connection(args))
    print(f"created recurring run {job_id} on {args.host} ({args.cron})")


def _kfp_args(sub, name, help_text, func):
    from collabopt.kubeflow.client import DEFAULT_TIMEOUT, TOKEN_ENV
    p = sub.add_parser(name, help=help_text)
    p.add_argument("package", help="a compiled pipeline (collabopt compile ... --output pipeline.yaml)")
    p.add_argument("--host", required=True, help="the KFP API endpoint, e.g. https://kfp.example.com")
    p.add_argument("--experiment", default=None)
    p.add_argument("--param", action="append", default=[], metavar="K=V",
                   help="a pipeline parameter, e.g. prune_epochs=3 (repeatable)")
    p.add_argument("--pipeline-root", default=None, help="default: the one compiled into the package")
    p.add_argument("--namespace", default=None, help="your profile's namespace (multi-user KFP)")
    p.add_argument("--service-account", default=None,
                   help="the runs' Kubernetes service account (default: the config's kubeflow.service_account)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help=f"seconds each request may take to connect and to answer (default {DEFAULT_TIMEOUT:g})")
    p.add_argument("--token-file", default=None,
                   help=f"a file holding a bearer token, read before each request (default: ${TOKEN_ENV}, if set)")
    p.add_argument("--ca-cert", default=None, help="a CA bundle to verify the host's TLS certificate")
    p.set_defaults(func=func)
    return p
