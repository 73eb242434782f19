from shared.learner_state import DomainState, LearnerState, SelectionRuntime, decode, encode


def test_round_trip_keeps_every_field():
    state = LearnerState(
        id="x.1",
        seed=42,
        region="eu-c",
        created=12.5,
        active=True,
        rounds=3,
        started_at=9.0,
        domains={
            "dsa": DomainState(
                skill=0.3,
                half_life=7200,
                last=10,
                attempts=2,
                completed=1,
                mastery=55.5,
                confidence=60,
                next_review=99,
                scores=[40, 70],
            )
        },
        selection=SelectionRuntime(["dsa", "os"], {"dsa": 1}, 2, 1),
        settings={"targetThreshold": 85},
        retention=1.2,
        transfer=0.1,
    )
    assert decode(encode(state)) == state


def test_fresh_learner_encoding_is_small():
    assert (
        len(encode(LearnerState(id="learner-000001", seed=123456789, region="eu-c", created=1.7e9)))
        < 120
    )


# A state written by the first encoder (round(x, k)): later encoders must read it unchanged.
OLD_FORM = (
    '{"id":"wrk-0001","sd":881028672,"rg":"local","cr":1795321522.936,"a":1,"n":40,'
    '"st":1795321522.936,"d":{"dsa":[0.86081,35005.5,1795321972.936,16,8,82.491,80.24,'
    '1795350772.936,[67,100,75,25,75,75,100,75,75,100]],"ml":[0,21600.0,0,0,0,0,50,0,[]]},'
    '"sel":[["databases","ml"],{"databases":0,"ml":0},0,0]}'
)


def test_old_form_decodes_and_re_encodes_to_the_same_values():
    state = decode(OLD_FORM)
    dsa = state.domains["dsa"]
    assert (dsa.skill, dsa.half_life, dsa.attempts, dsa.mastery) == (0.86081, 35005.5, 16, 82.491)
    assert dsa.scores[-1] == 100 and state.selection.locked_batch == ["databases", "ml"]
    assert state.domains["ml"].half_life == 21600.0
    # Integral values written as ints compare equal, and a re-encode is stable.
    assert decode(encode(state)) == state
    assert encode(decode(encode(state))) == encode(state)


def test_encoding_rounds_like_the_documented_precision():
    d = DomainState(skill=0.123456789, half_life=3600.06, last=1.7e9 + 0.12345, mastery=55.55555)
    raw = d.to_list()
    assert raw[0] == 0.12346 and raw[1] == 3600.1 and raw[2] == 1.7e9 + 0.123
    assert raw[5] == 55.556
    assert DomainState.from_list(raw).to_list() == raw


def test_incarnation_marker_is_in_the_encoding():
    from shared.learner_state import incarnation_marker

    state = LearnerState(id="a", seed=12345, region="eu")
    assert incarnation_marker(state) in encode(state)
    assert incarnation_marker(LearnerState(id="a", seed=1234, region="eu")) not in encode(state)
