//! Network coordinates on the simulated network (virtual clock): agents ping each other
//! once a probe period, their estimates approach the true round trips of a known latency
//! matrix, `get-coordinate`'s cache follows the member list, and hostile COORD frames teach
//! nothing.

use std::net::SocketAddr;
use std::time::Duration;

use tandem_core::Pool;
use tandem_core::cluster::{COORD_FRAME_LEN, Cluster, Coordinate, DIMENSIONS, VivaldiConfig};
use tandem_tests::coord_sim::{Topology, coord_run};
use tandem_tests::netsim::{NetConfig, cluster_net, converged, join_all, lan_addr, node_name};

#[test]
fn estimates_approach_the_true_rtts_of_a_wide_area_matrix() {
    let run = coord_run(
        20,
        Topology::Regions,
        &[Duration::from_secs(5), Duration::from_secs(120)],
    );
    let (early, late) = (&run.rows[0], &run.rows[1]);
    eprintln!("{run:?}");
    // Within 2 minutes the median pair is within 10 % of its RTT, and 9 in 10 within 25 ms
    // (the pairs inside one region, a few ms apart, keep the largest relative errors:
    // their distance is small beside the error of a coordinate among 100-ms distances).
    assert!(late.rel.0 < 0.10 && late.abs_ms.1 < 25.0, "{late:?}");
    assert!(late.rel.0 < early.rel.0 / 2.0, "{early:?} -> {late:?}");
    assert_eq!(late.resets, 0);
    assert_eq!(
        late.held_by_node0, 19,
        "node 0 holds every member's coordinate"
    );
}

#[test]
fn estimates_approach_the_true_rtts_inside_a_datacenter() {
    let run = coord_run(20, Topology::Datacenter, &[Duration::from_secs(120)]);
    let late = &run.rows[0];
    eprintln!("{run:?}");
    assert!(late.rel.0 < 0.25 && late.abs_ms.0 < 0.1, "{late:?}");
}

fn three() -> tandem_tests::netsim::Net<Cluster> {
    let mut sim = cluster_net(3, NetConfig::default(), 5, |_, c| {
        c.reap_after = Duration::from_secs(30);
    });
    join_all(&mut sim, 0);
    sim.run_until_cond(Duration::from_secs(30), Duration::from_millis(100), |s| {
        converged(s, Pool::Lan)
    })
    .expect("converged");
    sim
}

#[test]
fn every_member_learns_every_coordinate_and_forgets_a_reaped_one() {
    let mut sim = three();
    let me = sim.node(0).coordinate();
    assert_eq!(sim.node(0).coordinate_of(&node_name(0)), Some(me));
    assert_eq!(sim.node(0).coordinate_of("nobody"), None);
    sim.run_for(Duration::from_secs(20));
    for i in 0..3 {
        let c = sim.node(i);
        assert!(
            c.stats().coordinate_samples > 5,
            "node {i}: {:?}",
            c.stats()
        );
        for j in 0..3 {
            let theirs = c.coordinate_of(&node_name(j)).expect("known");
            assert!(theirs.is_valid());
            assert!(
                theirs.error < VivaldiConfig::default().error_max,
                "{i} sees {j}"
            );
        }
        assert_eq!(c.coordinates_held(), 2);
    }
    // Node 2 dies; once reaped (30 s after it went down) its coordinate is gone too.
    sim.kill(2);
    sim.run_for(Duration::from_secs(20));
    assert!(
        sim.node(0).coordinate_of(&node_name(2)).is_some(),
        "failed, not yet reaped"
    );
    sim.run_for(Duration::from_secs(40));
    assert_eq!(sim.node(0).coordinate_of(&node_name(2)), None);
    assert_eq!(sim.node(0).coordinates_held(), 1);
}

fn frame(kind: u8, version: u8, dims: u8, floats: &[f64]) -> Vec<u8> {
    let mut b = vec![kind, version, 0, 0, 0, 7, dims];
    for f in floats {
        b.extend_from_slice(&f.to_be_bytes());
    }
    b
}

#[test]
fn hostile_coordinate_frames_are_rejected_counted_and_change_nothing() {
    let mut sim = three();
    sim.run_for(Duration::from_secs(5));
    let from: SocketAddr = lan_addr(1);
    let good = {
        let mut f = vec![0.001; DIMENSIONS];
        f.extend([0.5, 0.0, 0.0001]);
        f
    };
    let mut cases: Vec<Vec<u8>> = Vec::new();
    for (i, bad) in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e300, -1e300]
        .into_iter()
        .enumerate()
    {
        for kind in [6, 7] {
            let mut f = good.clone();
            let n = f.len();
            f[i % n] = bad;
            cases.push(frame(kind, 1, DIMENSIONS as u8, &f));
        }
    }
    cases.push(frame(6, 2, DIMENSIONS as u8, &good)); // another version
    cases.push(frame(6, 1, 3, &good[..6])); // 3 dimensions
    cases.push(frame(6, 1, 255, &good)); // a dimension count that does not fit
    let whole = frame(6, 1, DIMENSIONS as u8, &good);
    assert_eq!(whole.len(), COORD_FRAME_LEN);
    cases.push(whole[..whole.len() - 1].to_vec()); // truncated
    cases.push([whole.as_slice(), &[0]].concat()); // trailing
    cases.push(vec![7]);
    let before = sim.node(0).stats();
    let coord = sim.node(0).coordinate();
    let held = sim.node(0).coordinate_of(&node_name(1));
    for case in &cases {
        // Nothing is answered to a rejected ping.
        let answer = sim.with(0, |c, now| {
            c.handle_datagram(Pool::Lan, from, case, now);
            c.poll_datagram()
        });
        assert!(answer.is_none(), "{case:?}");
    }
    let after = sim.node(0).stats();
    assert_eq!(
        after.coordinates_rejected - before.coordinates_rejected,
        cases.len() as u64
    );
    assert_eq!(after.bad_datagrams, before.bad_datagrams);
    assert_eq!(sim.node(0).coordinate(), coord);
    assert_eq!(sim.node(0).coordinate_of(&node_name(1)), held);
    assert_eq!(sim.node(0).coordinate_resets(), 0);

    // A well-formed ack nobody asked for teaches nothing either, and is not answered.
    let samples = after.coordinate_samples;
    let unsolicited = frame(7, 1, DIMENSIONS as u8, &good);
    let answer = sim.with(0, |c, now| {
        c.handle_datagram(Pool::Lan, from, &unsolicited, now);
        c.poll_datagram()
    });
    assert!(answer.is_none());
    assert_eq!(sim.node(0).stats().coordinate_samples, samples);
    assert_eq!(sim.node(0).coordinate(), coord);
    // A good ping is answered with an ack of this node's coordinate.
    let (pool, to, ack) = sim
        .with(0, |c, now| {
            c.handle_datagram(Pool::Lan, from, &whole, now);
            c.poll_datagram()
        })
        .expect("ack");
    assert_eq!(
        (pool, to, ack.len(), ack[0], &ack[2..6]),
        (Pool::Lan, from, COORD_FRAME_LEN, 7, &[0, 0, 0, 7][..])
    );
    let mut want = Coordinate::new(&VivaldiConfig::default());
    want.vec.copy_from_slice(&good[..DIMENSIONS]);
    assert_eq!(
        sim.node(0).coordinate_of(&node_name(1)).map(|c| c.vec),
        Some(want.vec)
    );
}

#[test]
fn with_coordinates_off_no_pings_are_sent_or_answered() {
    let mut sim = cluster_net(3, NetConfig::default(), 5, |_, c| c.coordinates = false);
    join_all(&mut sim, 0);
    sim.run_for(Duration::from_secs(20));
    let mut good = frame(6, 1, DIMENSIONS as u8, &[0.0; DIMENSIONS + 3]);
    good[7 + 8 * DIMENSIONS..7 + 8 * DIMENSIONS + 8].copy_from_slice(&0.5f64.to_be_bytes());
    let answer = sim.with(0, |c, now| {
        c.handle_datagram(Pool::Lan, lan_addr(1), &good, now);
        c.poll_datagram()
    });
    assert!(answer.is_none());
    for i in 0..3 {
        // Serf's `get-coordinate` with coordinates disabled: `Ok: false`, even for itself.
        assert_eq!(sim.node(i).coordinate_of(&node_name(i)), None);
        assert_eq!(sim.node(i).stats().coordinate_samples, 0);
        assert_eq!(sim.node(i).coordinates_held(), 0);
        assert_eq!(
            sim.node(i).coordinate(),
            Coordinate::new(&VivaldiConfig::default())
        );
    }
}

#[test]
fn a_member_that_never_answers_coord_pings_teaches_nothing_and_breaks_nothing() {
    // Node 2 stands for a peer without COORD frames (an older tandem): it neither pings
    // nor answers. Nodes 0 and 1 measure each other, never hold node 2's coordinate, and
    // membership is as it would be.
    let mut sim = cluster_net(3, NetConfig::default(), 9, |i, c| c.coordinates = i != 2);
    join_all(&mut sim, 0);
    sim.run_for(Duration::from_secs(30));
    assert!(converged(&sim, Pool::Lan));
    for i in 0..2 {
        let c = sim.node(i);
        assert!(
            c.stats().coordinate_samples > 3,
            "node {i}: {:?}",
            c.stats()
        );
        assert!(c.coordinate_of(&node_name(1 - i)).is_some());
        assert_eq!(c.coordinate_of(&node_name(2)), None);
        assert_eq!(c.coordinates_held(), 1);
    }
}

#[test]
fn coordinates_are_measured_through_gossip_encryption() {
    use tandem_core::cluster::{GossipKey, Keyring};
    let ring = Keyring::new(GossipKey::new(&[0x5a; 32]).expect("key"), []);
    let mut sim = cluster_net(3, NetConfig::default(), 11, |_, c| c.keyring = ring.clone());
    join_all(&mut sim, 0);
    sim.run_for(Duration::from_secs(20));
    for i in 0..3 {
        let s = sim.node(i).stats();
        assert!(s.coordinate_samples > 3, "node {i}: {s:?}");
        assert_eq!(
            (s.coordinates_rejected, s.bad_datagrams, s.decrypt_failures),
            (0, 0, 0)
        );
        assert_eq!(sim.node(i).coordinates_held(), 2);
    }
}
