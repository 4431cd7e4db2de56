"""Network time (testbed/network.py): profiles resolve, the formula on hand-computed examples, each
protocol's traffic sequenced as docs/network.md states, a run's summary against its own message
log, and bad ``network`` values refused naming the key."""

import json

import pytest
from clitools import make_summary

from analysis import report
from analysis.compare import write_network
from testbed.config import ScenarioError, parse_scenario
from testbed.driver import run_scenario
from testbed.inprocess import InProcessParties
from testbed.network import PROFILES, Leg, Link, leg_seconds, mpc_leg, network_time
from testbed.result_schema import Communication, read_summary
from testbed.results import RunDirectory
from testbed.run import main, summary_table

WAN = Link(bandwidth_mbps=100.0, rtt_ms=40.0)
#: 8 Mbit/s moves one byte per microsecond: seconds are bytes / 1e6, easy to check by hand.
BYTE_PER_US = Link(bandwidth_mbps=8.0, rtt_ms=10.0)


def communication(**keys) -> Communication:
    return Communication(**{"setup_bytes": 0, "setup_messages": 0, "bytes_per_epoch": 0, "messages_per_epoch": 0, "rounds_per_epoch": 0,
                            "exchange_epochs": 0, "bytes_per_epoch_by_direction": {}, **keys})


# -- profiles and validation ---------------------------------------------------------------------
def test_the_default_is_lan_and_profiles_resolve_to_their_figures(tiny_raw):
    assert parse_scenario(tiny_raw).network == Link(bandwidth_mbps=1000.0, rtt_ms=0.2)
    wan = parse_scenario({**tiny_raw, "network": "wan"})
    assert wan.network == Link(bandwidth_mbps=100.0, rtt_ms=40.0) and wan.dump()["network"] == "wan"
    assert parse_scenario(tiny_raw, ["network=mobile"]).network == PROFILES["mobile"]
    custom = parse_scenario({**tiny_raw, "network": {"bandwidth_mbps": 25, "rtt_ms": 0}})
    assert custom.network == Link(bandwidth_mbps=25.0, rtt_ms=0.0)
    # A custom link is written back as given, and read again as the same link.
    assert parse_scenario({**tiny_raw, "network": custom.dump()["network"]}).network == custom.network


@pytest.mark.parametrize("value, key, words", [
    ("fast", "network", ["unknown network profile", "'fast'", "lan, wan, mobile"]),
    ({"bandwidth_mbps": 0, "rtt_ms": 1}, "network.bandwidth_mbps", ["greater than 0", "got 0"]),
    ({"bandwidth_mbps": 10, "rtt_ms": -1}, "network.rtt_ms", ["greater than or equal to 0", "got -1"]),
    ({"bandwidth_mbps": 10}, "network.rtt_ms", ["required key is missing"]),
    ({"bandwidth_mbps": 10, "rtt_ms": 1, "loss": 0.1}, "network.loss", ["unknown key"]),
    (7, "network", ["lan, wan, mobile", "got 7"]),
])
def test_a_bad_network_is_refused_naming_the_key_the_value_and_what_is_allowed(tiny_raw, value, key, words):
    with pytest.raises(ScenarioError) as info:
        parse_scenario({**tiny_raw, "network": value})
    (path, message), = info.value.problems
    assert path == key and all(word in message for word in words), message


def test_the_cli_refuses_an_unknown_profile_with_exit_2(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nparties: {A: {samples: 10}, B: {samples: 10}}\nnetwork: dialup\n")
    assert main([str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "  network: unknown network profile" in err and "'dialup'" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


# -- the formula ---------------------------------------------------------------------------------
def test_a_leg_takes_its_busiest_direction_plus_one_rtt_per_round():
    # 1.25 MB at 10 Mbit/s is 1 s; the smaller direction crosses at the same time; 2 rounds of 20 ms.
    leg = Leg({"A->B": 1_250_000, "B->A": 500_000}, rounds=2)
    assert leg_seconds(leg, Link(bandwidth_mbps=10.0, rtt_ms=20.0)) == pytest.approx(1.04)
    assert leg_seconds(Leg({}, rounds=3), WAN) == pytest.approx(0.12)
    assert leg_seconds(Leg({}, rounds=0), WAN) == 0.0


def test_a_party_s_link_carries_all_it_sends_and_all_it_receives():
    # A answers two peers: 2 MB leave its link, one byte per microsecond: 2 s, not 1 s.
    answers = Leg({"A->B": 1_000_000, "A->C": 1_000_000, "B->A": 400_000, "C->A": 400_000}, rounds=1)
    assert leg_seconds(answers, BYTE_PER_US) == pytest.approx(2.01)
    # A receives from two peers: its downlink is the busiest.
    queries = Leg({"B->A": 700_000, "C->A": 700_000}, rounds=1)
    assert leg_seconds(queries, BYTE_PER_US) == pytest.approx(1.41)


def test_mpc_traffic_splits_its_bytes_between_the_two_directions_and_waits_every_round():
    # 2 MB both directions together: 1 MB each way at one byte per microsecond, and 100 rounds of 10 ms.
    assert leg_seconds(mpc_leg(2_000_000, 100), BYTE_PER_US) == pytest.approx(2.0)


# -- each protocol's traffic -------------------------------------------------------------------
def test_smule_waits_for_the_setup_once_and_for_every_answer_each_exchange_epoch():
    comm = communication(setup_bytes=6_000_000, setup_messages=2, setup_bytes_by_direction={"A->B": 3_000_000, "B->A": 3_000_000}, setup_rounds=1,
                         bytes_per_epoch=200_000, messages_per_epoch=2, rounds_per_epoch=1, exchange_epochs=4,
                         bytes_per_epoch_by_direction={"A->B": 100_000, "B->A": 100_000})
    time = network_time(comm, WAN)
    # 3 MB at 100 Mbit/s = 0.24 s, plus 40 ms; 100 kB = 8 ms, plus 40 ms.
    assert time["network_setup_seconds"] == pytest.approx(0.28) and time["network_seconds_per_epoch"] == pytest.approx(0.048)
    assert (time["network_profile"], time["network_bandwidth_mbps"], time["network_rtt_ms"]) == ("wan", 100.0, 40.0)
    assert "mpc_network_seconds_per_epoch_model" not in time


def test_fedavg_sends_each_model_before_the_peer_averages_and_has_no_setup():
    comm = communication(bytes_per_epoch=400_000, messages_per_epoch=2, rounds_per_epoch=1, exchange_epochs=3,
                         bytes_per_epoch_by_direction={"A->B": 200_000, "B->A": 200_000})
    time = network_time(comm, PROFILES["lan"])
    # 200 kB at 1 Gbit/s = 1.6 ms, plus 0.2 ms.
    assert time["network_setup_seconds"] == 0.0 and time["network_seconds_per_epoch"] == pytest.approx(0.0018)


def test_joint_training_is_timed_from_its_mpc_bytes_and_rounds_for_each_source():
    comm = communication(mpc_bytes_per_epoch_model=1_000_000_000, mpc_rounds_per_epoch_model=1000,
                         mpc_bytes_per_epoch_measured=1_200_000_000, mpc_rounds_per_epoch_measured=1000)
    time = network_time(comm, WAN)
    # 500 MB each way at 100 Mbit/s = 40 s, plus 1000 rounds of 40 ms; measured: 600 MB each way = 48 s.
    assert time["mpc_network_seconds_per_epoch_model"] == pytest.approx(80.0)
    assert time["mpc_network_seconds_per_epoch_measured"] == pytest.approx(88.0)
    # The joint baseline sends nothing on the channel.
    assert time["network_setup_seconds"] == 0.0 and time["network_seconds_per_epoch"] == 0.0
    # Without a measurement there is no measured time.
    assert "mpc_network_seconds_per_epoch_measured" not in network_time(communication(mpc_bytes_per_epoch_model=8, mpc_rounds_per_epoch_model=1), WAN)


def test_local_training_takes_no_network_time():
    time = network_time(communication(), PROFILES["mobile"])
    assert time["network_setup_seconds"] == 0.0 and time["network_seconds_per_epoch"] == 0.0


def test_a_summary_without_setup_directions_counts_its_setup_as_one_transfer():
    # Written before setup directions and rounds were recorded: 6 MB in one direction, one round.
    old = communication(setup_bytes=6_000_000, setup_messages=2)
    assert network_time(old, WAN)["network_setup_seconds"] == pytest.approx(0.52)


# -- a run -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["smule", "fedavg"])
def test_a_run_s_summary_times_the_bytes_of_its_own_message_log(tmp_path, tiny_raw, protocol):
    scenario = parse_scenario({**tiny_raw, "protocol": protocol, "network": {"bandwidth_mbps": 8.0, "rtt_ms": 10.0}})
    run_scenario(scenario, RunDirectory(tmp_path / "run"), progress=False, placement=InProcessParties)
    comm = read_summary(tmp_path / "run" / "summary.json").communication
    messages = [json.loads(line) for line in (tmp_path / "run" / "messages.jsonl").read_text().splitlines()]
    last = max(m["epoch"] for m in messages)
    # One byte per microsecond: the largest message of a step, then one 10 ms round per message kind.
    largest_in = lambda epoch: max((m["bytes"] for m in messages if m["epoch"] == epoch), default=0)  # noqa: E731
    kinds_in = lambda epoch: len({m["kind"] for m in messages if m["epoch"] == epoch})  # noqa: E731
    assert comm.network_profile == "custom" and (comm.network_bandwidth_mbps, comm.network_rtt_ms) == (8.0, 10.0)
    assert comm.network_seconds_per_epoch == pytest.approx(largest_in(last) / 1e6 + kinds_in(last) * 0.01)
    assert comm.network_setup_seconds == pytest.approx(largest_in(0) / 1e6 + kinds_in(0) * 0.01)
    assert comm.network_seconds_per_epoch > 0.01 and (comm.network_setup_seconds > 0.01) == (protocol == "smule")


# -- the comparison's network table, break-even and figure ------------------------------------
def compared_runs():
    """SMuLe with a costly setup and cheap epochs, FedAvg without setup and dearer epochs, joint MPC
    training, local training: as their summaries record them."""
    smule = make_summary({"A": {}, "B": {}}, {"setup_bytes": 10_000_000, "setup_messages": 2, "setup_bytes_by_direction": {"A->B": 5_000_000, "B->A": 5_000_000},
                                              "setup_rounds": 1, "bytes_per_epoch": 200_000, "messages_per_epoch": 2, "rounds_per_epoch": 1, "exchange_epochs": 2,
                                              "bytes_per_epoch_by_direction": {"A->B": 100_000, "B->A": 100_000}}, scheme="ckks")
    fedavg = make_summary({"A": {}, "B": {}}, {"bytes_per_epoch": 4_000_000, "messages_per_epoch": 2, "rounds_per_epoch": 1, "exchange_epochs": 3,
                                               "bytes_per_epoch_by_direction": {"A->B": 2_000_000, "B->A": 2_000_000}}, protocol="fedavg")
    joint = make_summary({"A": {}, "B": {}}, {"mpc_bytes_per_epoch_model": 1_000_000_000, "mpc_rounds_per_epoch_model": 1000}, protocol="joint")
    return [("smule", smule), ("fedavg", fedavg), ("joint", joint), ("local", make_summary({"A": {}, "B": {}}, protocol="local"))]


def test_the_comparison_tables_every_protocol_on_every_profile_with_its_break_even(tmp_path):
    table, even = write_network(tmp_path, compared_runs())
    seconds = table.set_index(["network", "protocol"])
    # WAN: SMuLe 5 MB each way = 0.4 s + 40 ms once, 100 kB = 8 ms + 40 ms an epoch; FedAvg 2 MB = 0.16 s + 40 ms;
    # joint 500 MB each way = 40 s + 1000 x 40 ms.
    assert seconds.loc[("wan", "smule, ckks"), "network_setup_seconds"] == pytest.approx(0.44)
    assert seconds.loc[("wan", "smule, ckks"), "network_seconds_per_epoch"] == pytest.approx(0.048)
    assert seconds.loc[("wan", "fedavg"), "network_seconds_per_epoch"] == pytest.approx(0.2)
    assert seconds.loc[("wan", "joint, MPC training modelled"), "network_seconds_per_epoch"] == pytest.approx(80.0)
    assert seconds.loc[("lan", "local"), "network_seconds_per_epoch"] == 0.0 and set(table["network"]) == {"lan", "wan", "mobile"}
    # SMuLe's extra 0.44 s of setup against FedAvg's 0.152 s more per epoch: 2.9 epochs, so from the 3rd;
    # against joint MPC (79.952 s more per epoch) from the first.
    pairs = even.set_index(["network", "protocol", "against"])["epochs"]
    assert pairs[("wan", "smule, ckks", "fedavg")] == 3 and pairs[("wan", "smule, ckks", "joint, MPC training modelled")] == 1
    # LAN: setup 40.2 ms against 15.2 ms saved per epoch: 2.6, so the 3rd.
    assert pairs[("lan", "smule, ckks", "fedavg")] == 3
    assert ("wan", "fedavg", "smule, ckks") not in pairs.index  # no setup to pay back
    assert {p.name for p in tmp_path.iterdir()} >= {"network.csv", "network_break_even.csv", "network.png", "network.svg"}


def test_a_custom_link_joins_the_profiles_and_a_comparison_that_sends_nothing_still_gets_its_table(tmp_path, capsys):
    custom = make_summary({"A": {}}, {"network_profile": "custom", "network_bandwidth_mbps": 8.0, "network_rtt_ms": 10.0}, protocol="local")
    table, even = write_network(tmp_path, [("local", custom)])
    assert set(table["network"]) == {"lan", "wan", "mobile", "custom"} and (table["network_seconds_per_epoch"] == 0).all() and even.empty
    assert (tmp_path / "network.csv").is_file() and not (tmp_path / "network.png").exists()
    assert "network figure skipped" in capsys.readouterr().err


def test_the_report_shows_the_network_table_and_names_a_malformed_one(tmp_path, capsys):
    results = tmp_path / "results" / "compare"
    results.mkdir(parents=True)
    (results / "comparison.csv").write_text("protocol,accuracy\nsmule,0.9\n")
    write_network(results, compared_runs())
    assert report.main([str(tmp_path / "results"), "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Network seconds per exchange epoch" in text and "| smule, ckks | 0.001 |" in text
    (results / "network.csv").write_text("protocol,network,network_setup_seconds,network_seconds_per_epoch\nsmule,lan,0.1,fast\n")
    assert report.main([str(tmp_path / "results"), "--out", str(tmp_path / "again")]) == 2
    err = capsys.readouterr().err
    assert "network.csv" in err and "Traceback" not in err and not (tmp_path / "again").exists()


def test_the_summary_line_of_a_run_says_network_time_only():
    summary = make_summary({"A": {}}, {"network_profile": "wan", "network_bandwidth_mbps": 100.0, "network_rtt_ms": 40.0,
                                       "network_setup_seconds": 0.44, "network_seconds_per_epoch": 0.048, "mpc_network_seconds_per_epoch_model": 80.0})
    assert "network time only (not measured) on wan: setup 0.44 s, 0.048 s per exchange epoch, MPC training 80 s per epoch (model)" in summary_table(summary)
