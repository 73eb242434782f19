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
