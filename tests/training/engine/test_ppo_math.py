"""PPO's pure functions against numbers worked out by hand."""

import math

import pytest
import torch

from training.engine.ppo import compute_gae, policy_loss, truncate_at_stop, value_loss, whiten

pytestmark = []


def test_compute_gae_matches_hand_computation():
    # One sequence of 3 tokens, all valid; gamma = 0.5, lam = 0.5.
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.2, 0.4]])
    mask = torch.ones(1, 3)
    adv, ret = compute_gae(rewards, values, mask, gamma=0.5, lam=0.5)
    # delta2 = 1 - 0.4 = 0.6;           A2 = 0.6
    # delta1 = 0 + 0.5*0.4 - 0.2 = 0;   A1 = 0 + 0.25*0.6 = 0.15
    # delta0 = 0 + 0.5*0.2 - 0.5 = -0.4; A0 = -0.4 + 0.25*0.15 = -0.3625
    assert adv.tolist()[0] == pytest.approx([-0.3625, 0.15, 0.6])
    assert ret.tolist()[0] == pytest.approx([0.1375, 0.35, 1.0])


def test_compute_gae_treats_masked_tail_as_terminal():
    rewards = torch.tensor([[0.0, 2.0, 5.0]])  # the 5.0 is after the end and must be ignored
    values = torch.tensor([[1.0, 1.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    adv, ret = compute_gae(rewards, values, mask, gamma=1.0, lam=1.0)
    # A1 = 2 - 1 = 1; A0 = (0 + 1 - 1) + 1 = 1; masked position 0.
    assert adv.tolist()[0] == pytest.approx([1.0, 1.0, 0.0])
    assert ret.tolist()[0] == pytest.approx([2.0, 2.0, 0.0])


def test_whiten_uses_unbiased_variance_over_the_mask():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    out = whiten(x, mask)
    # mean 2, unbiased variance 1 -> (x - 2) / 1; the masked entry is zeroed.
    assert out.tolist()[0] == pytest.approx([-1.0, 0.0, 1.0, 0.0], abs=1e-6)
    kept = whiten(x, mask, shift_mean=False)
    assert kept.tolist()[0] == pytest.approx([1.0, 2.0, 3.0, 0.0], abs=1e-6)


def test_policy_loss_clips_the_ratio():
    old = torch.zeros(1, 3)
    new = torch.tensor([[math.log(1.5), math.log(0.5), math.log(1.1)]])
    adv = torch.tensor([[1.0, -1.0, 2.0]])
    mask = torch.ones(1, 3)
    loss, clipfrac = policy_loss(new, old, adv, mask, cliprange=0.2)
    # token 0: max(-1.5, -1.2) = -1.2 (clipped); token 1: max(0.5, 0.8) = 0.8 (clipped);
    # token 2: max(-2.2, -2.2) = -2.2 (inside the range). Mean = -2.6 / 3.
    assert loss.item() == pytest.approx(-2.6 / 3, rel=1e-5)
    assert clipfrac.item() == pytest.approx(2 / 3)


def test_value_loss_clips_the_value_change():
    old = torch.tensor([[0.0, 0.0]])
    new = torch.tensor([[1.0, 0.1]])
    returns = torch.tensor([[2.0, 0.0]])
    mask = torch.ones(1, 2)
    loss, clipfrac = value_loss(new, old, returns, mask, cliprange_value=0.5)
    # token 0: unclipped (1-2)^2 = 1, clipped (0.5-2)^2 = 2.25 -> 2.25; token 1: 0.01 both ways.
    assert loss.item() == pytest.approx(0.5 * (2.25 + 0.01) / 2)
    assert clipfrac.item() == pytest.approx(0.5)


def test_truncate_at_stop_keeps_the_stop_token_and_masks_the_rest():
    responses = torch.tensor([[5, 7, 3, 9, 9], [5, 6, 7, 8, 9]])
    out, mask, ended = truncate_at_stop(responses, stop_ids=[3], pad_id=0)
    assert out.tolist() == [[5, 7, 3, 0, 0], [5, 6, 7, 8, 9]]
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert ended.tolist() == [True, False]
