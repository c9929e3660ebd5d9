import os
import socket

import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from ragmodels.training import TrainConfig, train

from training_fixtures import make_components, qa_file, save_components  # noqa: F401  (fixtures)


def run_config(model_path, qa_file, out, batch_size):
    # adam_epsilon 1.0, not 1e-8: the 2-process all-reduce sums each gradient in another order, so it
    # differs by float32 rounding (~1e-7 absolute for these O(0.1-1) gradients). AdamW's update
    # lr*m/(sqrt(v)+eps) has slope up to lr/eps in g where |g| <~ eps: with eps=1e-8 a near-zero gradient
    # coordinate can move by up to lr (1.6e-6..4.5e-6 seen against atol 1e-6 on two CPUs), with eps=1 the
    # slope is <= lr = 1e-2, so rounding moves a weight by ~1e-9, and what is left is the weights' own float32
    # rounding (rtol 1e-5 ~ 100 ulp). A wrong reduction (a sum instead of a mean, a rank missing) changes g by
    # a factor, i.e. an update by ~1e-3: caught.
    return TrainConfig(train_file=str(qa_file), output_dir=str(out), model_path=str(model_path), batch_size=batch_size,
                       max_steps=2, learning_rate=1e-2, adam_epsilon=1.0, progress_bar=False, device="cpu")


def worker(rank, world_size, port, model_path, qa_file, out):
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    train(run_config(model_path, qa_file, out, batch_size=2))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_make_the_update_of_one_on_the_same_global_batch(make_components, qa_file, tmp_path):
    model_path = save_components(make_components(dropout=False), tmp_path / "init")
    train(run_config(model_path, qa_file, tmp_path / "one", batch_size=4))
    mp.spawn(worker, args=(2, free_port(), model_path, qa_file, tmp_path / "two"), nprocs=2, join=True)
    initial = load_file(model_path / "model.safetensors")
    one = load_file(tmp_path / "one" / "model" / "model.safetensors")
    two = load_file(tmp_path / "two" / "model" / "model.safetensors")
    assert any(not torch.equal(initial[k], one[k]) for k in one)  # the step did something
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-5, atol=1e-6)
