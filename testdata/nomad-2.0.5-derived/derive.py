#!/usr/bin/env python3
"""Derives node-allocations-events.json from the real Nomad 2.0.5 captures
in ../nomad-2.0.5-extra and ../nomad-2.0.5/api (see README.md here).
Run from this folder: python3 derive.py > node-allocations-events.json"""
import copy
import json

mixed = json.load(open("../nomad-2.0.5-extra/node-allocations-mixed.json"))
failed = json.load(open("../nomad-2.0.5/api/allocation-failed.json"))
by_name = {a["Name"]: a for a in mixed}

# Every event field as Nomad 2.0.5 sends it (allocation-failed.json).
EVENT = {k: v for k, v in failed["TaskStates"]["crash"]["Events"][0].items()}
for k in EVENT:
    if k not in ("Type", "Time", "Details"):
        EVENT[k] = "" if isinstance(EVENT[k], str) else (False if isinstance(EVENT[k], bool) else 0)


def event(typ, t, display, details=None, **fields):
    e = dict(EVENT, Type=typ, Time=t, DisplayMessage=display, Details=details or {})
    e.update(fields)
    return e


def rfc3339(ns):
    import datetime
    dt = datetime.datetime.fromtimestamp(ns // 10**9, datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + ".%09dZ" % (ns % 10**9)


def start_events(t0):
    return [
        event("Received", t0, "Task received by client"),
        event("Task Setup", t0 + 1_500_000, "Building Task Directory",
              {"message": "Building Task Directory"}, Message="Building Task Directory"),
        event("Started", t0 + 150_000_000, "Task started by client"),
    ]


def retarget(alloc, alloc_id, job_id, index):
    """A new allocation of a new job, with the shapes of alloc."""
    a = copy.deepcopy(alloc)
    group = a["TaskGroup"]
    a["ID"] = alloc_id
    a["EvalID"] = alloc_id[:8] + a["EvalID"][8:]
    a["JobID"] = job_id
    a["Name"] = "%s.%s[0]" % (job_id, group)
    a["Job"]["ID"] = job_id
    a["Job"]["Name"] = job_id
    for k in ("CreateIndex", "ModifyIndex", "AllocModifyIndex"):
        a[k] = index
    for k in ("CreateIndex", "ModifyIndex", "JobModifyIndex"):
        a["Job"][k] = index
    return a


out = []

# 1. The real failed allocation, as captured: task crash exits 3, Not
#    Restarting. It was captured on another dev agent's node: moved to the
#    node of node-allocations-mixed.json, like the others.
failed["NodeID"] = mixed[0]["NodeID"]
failed["NodeName"] = mixed[0]["NodeName"]
out.append(failed)

# 2. A restarting service: task app was OOM-killed once (exit 137, signal 9,
#    oom_killed "true"), restarted within policy (Restarts 1) and runs again;
#    proxy is a prestart sidecar, init a prestart task that completed.
base = by_name["chatty.g[0]"]
a = retarget(base, "6d0f3a52-91c4-4be7-8f1d-2c5e7b9a0d13", "flaky", 60)
a["TaskGroup"] = "app"
a["Name"] = "flaky.app[0]"
tg = a["Job"]["TaskGroups"][0]
tg["Name"] = "app"
tmpl = tg["Tasks"][1]  # "web"
tasks = []
for name, lifecycle in (("app", None), ("proxy", {"Hook": "prestart", "Sidecar": True}),
                        ("init", {"Hook": "prestart", "Sidecar": False})):
    t = copy.deepcopy(tmpl)
    t["Name"] = name
    t["Lifecycle"] = lifecycle
    tasks.append(t)
tg["Tasks"] = tasks
t0 = 1795621100000000000
restart_at = t0 + 4_200_000_000
app = start_events(t0 + 300_000_000) + [
    event("Terminated", t0 + 4_100_000_000, "Exit Code: 137, Signal: 9",
          {"exit_code": "137", "signal": "9", "oom_killed": "true"}, ExitCode=137, Signal=9),
    event("Restarting", restart_at, "Task restarting in 15.612343551s",
          {"restart_reason": "Restart within policy", "start_delay": "15612343551"},
          RestartReason="Restart within policy", StartDelay=15612343551),
    event("Started", restart_at + 15_700_000_000, "Task started by client"),
]
proxy = start_events(t0 + 100_000_000)
init = start_events(t0) + [
    event("Terminated", t0 + 250_000_000, "Exit Code: 0",
          {"exit_code": "0", "signal": "0", "oom_killed": "false"}),
]
a["TaskStates"] = {
    "app": {"State": "running", "Failed": False, "Restarts": 1, "LastRestart": rfc3339(restart_at),
            "StartedAt": rfc3339(restart_at + 15_700_000_000), "FinishedAt": None, "Events": app},
    "proxy": {"State": "running", "Failed": False, "Restarts": 0, "LastRestart": None,
              "StartedAt": rfc3339(t0 + 250_000_000), "FinishedAt": None, "Events": proxy},
    "init": {"State": "dead", "Failed": False, "Restarts": 0, "LastRestart": None,
             "StartedAt": rfc3339(t0 + 150_000_000), "FinishedAt": rfc3339(t0 + 250_000_000), "Events": init},
}
a["TaskResources"] = {n: a["TaskResources"]["web"] for n in ("app", "proxy", "init")}
a["AllocatedResources"]["Tasks"] = {n: a["AllocatedResources"]["Tasks"]["web"] for n in ("app", "proxy", "init")}
a["AllocatedResources"]["TaskLifecycles"] = {"app": None, "proxy": tasks[1]["Lifecycle"], "init": tasks[2]["Lifecycle"]}
out.append(a)

# 3. A dispatched child of the parameterized batch job burst: ID
#    <parent>/dispatch-<unix>-<8 hex>, ParentID, Dispatched (section 9).
launch = 1795621200
child = "burst/dispatch-%d-5f3a9c1e" % launch
a = retarget(by_name["burst.b[0]"], "a3c81e07-5d2b-4f69-b0e4-71d95c3f28ab", child, 70)
a["Job"]["ParentID"] = "burst"
a["Job"]["Dispatched"] = True
a["Job"]["ParameterizedJob"] = {"MetaOptional": None, "MetaRequired": None, "Payload": "optional"}
t0 = launch * 10**9 + 5_000_000
a["TaskStates"]["writer"]["Events"] = start_events(t0) + [
    event("Terminated", t0 + 900_000_000, "Exit Code: 0", {"exit_code": "0", "signal": "0", "oom_killed": "false"}),
]
a["TaskStates"]["writer"]["StartedAt"] = rfc3339(t0 + 150_000_000)
a["TaskStates"]["writer"]["FinishedAt"] = rfc3339(t0 + 900_000_000)
out.append(a)

# 4. A child of the periodic job nightly: ID <parent>/periodic-<unix>,
#    ParentID, Periodic null (Nomad's deriveJob); its task keeps no logs
#    (logs { disabled = true }).
launch = 1795621300
child = "nightly/periodic-%d" % launch
a = retarget(by_name["burst.b[0]"], "c7e2f914-0b3a-4d58-9e61-3f8a2d5c7b90", child, 80)
a["Job"]["ParentID"] = "nightly"
a["Job"]["TaskGroups"][0]["Tasks"][0]["LogConfig"]["Disabled"] = True
a["ClientStatus"] = "running"
a["ClientDescription"] = "Tasks are running"
t0 = launch * 10**9 + 2_000_000
a["TaskStates"]["writer"] = {"State": "running", "Failed": False, "Restarts": 0, "LastRestart": None,
                             "StartedAt": rfc3339(t0 + 150_000_000), "FinishedAt": None,
                             "Events": start_events(t0)}
out.append(a)

print(json.dumps(out, indent=2))
