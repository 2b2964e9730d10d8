//! `FloatEngine::step_observed`: observing a step changes no bit of it (with the no-op observer
//! and with one that looks at every value), and the observed values are the engine's own (the
//! last block output of a step is the new y, the halting head's products plus the bias are
//! `q_halt` and `q_continue`).

use trm_nostd::float::{NoObserver, Observer, OwnedWeights, Site};
use trm_nostd::{
    Config, DType, Engine, FloatEngine, PosEncoding, StepOutput, TensorId, TensorSource,
};

fn small(mlp_t: bool, pos: PosEncoding) -> Config {
    Config {
        hidden_size: 16,
        num_heads: 2,
        expansion: 2.0,
        l_layers: 2,
        h_cycles: 2,
        l_cycles: 2,
        mlp_t,
        pos_encodings: pos,
        puzzle_emb_ndim: 16,
        puzzle_emb_len: 1,
        num_puzzle_identifiers: 2,
        vocab_size: 5,
        seq_len: 7,
        halt_max_steps: 3,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
    }
}

fn variants() -> [(&'static str, Config); 3] {
    [
        ("mlp_t", small(true, PosEncoding::None)),
        ("attention rope", small(false, PosEncoding::Rope)),
        ("attention learned", small(false, PosEncoding::Learned)),
    ]
}

/// Keeps the last values seen at the last block's output and at the halting head, and folds
/// every value it sees into a checksum (so that nothing it is shown goes unread).
#[derive(Default)]
struct Watcher {
    last_block: u8,
    block_out: Vec<f32>,
    q_head: Vec<f32>,
    calls: usize,
    sum: f64,
}

impl Observer for Watcher {
    fn observe(&mut self, site: Site, values: &[f32]) {
        self.calls += 1;
        self.sum += values.iter().map(|v| *v as f64).sum::<f64>();
        match site {
            Site::BlockOutput { layer } if layer == self.last_block => {
                self.block_out = values.to_vec();
            }
            Site::QHead => self.q_head = values.to_vec(),
            _ => {}
        }
    }
}

/// Bits of what a step leaves behind: its output, y, z and the logits.
fn bits(e: &FloatEngine<'_>, s: StepOutput<f32>) -> Vec<u32> {
    let c = e.config();
    let mut logits = vec![0f32; c.seq_len as usize * c.vocab_size as usize];
    e.logits(&mut logits).unwrap();
    let mut b = vec![s.step, s.q_halt.to_bits(), s.q_continue.to_bits()];
    for v in [e.y(), e.z(), &logits[..]] {
        b.extend(v.iter().map(|x| x.to_bits()));
    }
    b
}

#[test]
fn observing_a_step_changes_no_bit() {
    for (name, c) in variants() {
        let w = OwnedWeights::random(&c, 5, DType::F32);
        let src = w.source();
        let tokens = [1u8, 4, 0, 2, 3, 1, 2];
        let n = FloatEngine::scratch_len(&c).f32s;
        let (mut s0, mut s1, mut s2) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
        let mut plain = FloatEngine::new(&c, &src, &mut s0).unwrap();
        let mut quiet = FloatEngine::new(&c, &src, &mut s1).unwrap();
        let mut watched = FloatEngine::new(&c, &src, &mut s2).unwrap();
        for e in [&mut plain, &mut quiet, &mut watched] {
            e.start(&tokens, 1).unwrap();
        }
        let mut watcher = Watcher {
            last_block: (c.l_layers - 1) as u8,
            ..Watcher::default()
        };
        for step in 1..=c.halt_max_steps {
            let want = plain.step();
            let want = bits(&plain, want);
            let got = quiet.step_observed(&mut NoObserver);
            assert_eq!(
                bits(&quiet, got),
                want,
                "{name}: step {step} with NoObserver"
            );
            let got = watched.step_observed(&mut watcher);
            assert_eq!(bits(&watched, got), want, "{name}: step {step} observed");
            // The observed values are the engine's: the step ends with y = net(y, z), whose
            // last block output is the new y.
            assert_eq!(watcher.block_out, watched.y(), "{name}: step {step}");
            let bias = src.tensor(TensorId::QHeadBias).unwrap();
            let (b0, b1) = (bias.get_f32(0).unwrap(), bias.get_f32(1).unwrap());
            assert_eq!(watcher.q_head.len(), 2, "{name}");
            assert_eq!(
                (watcher.q_head[0] + b0, watcher.q_head[1] + b1),
                (got.q_halt, got.q_continue),
                "{name}: step {step}"
            );
        }
        assert!(watcher.calls > 0 && watcher.sum.is_finite(), "{name}");
    }
}
