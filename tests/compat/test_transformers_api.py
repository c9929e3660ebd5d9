"""What ragmodels relies on in transformers, one small exact test each; runs on every supported version.

A failure here names the transformers behaviour that changed (see ragmodels._transformers_compat). CI runs
this module on the pinned transformers and, in the same run, on a second version
(tests/test_compat_second_version.py).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect

import pytest
import torch
import transformers
from transformers import BartConfig, BartForConditionalGeneration, DPRConfig, GenerationConfig

import ragmodels
from ragmodels import _transformers_compat as compat
from ragmodels.config import RagConfig

needs_torch_models = pytest.mark.skipif(
    not compat.torch_models_supported(),
    reason=f"ragmodels' PyTorch models need transformers>={compat.TORCH_MODELS_MIN_VERSION}",
)


def tiny_bart() -> BartConfig:
    return BartConfig(
        vocab_size=40, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=16, decoder_ffn_dim=16, max_position_embeddings=32,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, forced_bos_token_id=None,
    )


# --- importing -----------------------------------------------------------------------------------------
def test_every_exported_name_imports():
    tf_names = {name for name in ragmodels.__all__ if name.startswith("TF")}
    for name in ragmodels.__all__:
        if name in tf_names and importlib.util.find_spec("tensorflow") is None:
            continue
        if name == "RayRagRetriever" and importlib.util.find_spec("ray") is None:
            continue
        assert getattr(ragmodels, name).__name__ == name


def test_config_base_is_transformers_config_class():
    base = getattr(transformers, "PreTrainedConfig", None) or transformers.PretrainedConfig
    assert compat.PreTrainedConfig is base
    assert issubclass(RagConfig, base)
    assert compat.DATACLASS_CONFIGS == dataclasses.is_dataclass(base)


# --- configs: what RagConfig builds on -------------------------------------------------------------------
def test_rag_config_round_trips_with_nested_sub_configs(tmp_path):
    config = RagConfig(
        question_encoder=DPRConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2).to_dict(),
        generator=tiny_bart().to_dict(), n_docs=3, title_sep=" | ", bos_token_id=0,
    )
    assert type(config.question_encoder) is DPRConfig and type(config.generator) is BartConfig
    assert (config.n_docs, config.title_sep, config.bos_token_id, config.is_encoder_decoder) == (3, " | ", 0, True)
    saved = config.to_dict()
    assert saved["model_type"] == "rag"
    assert saved["question_encoder"]["model_type"] == "dpr" and saved["generator"]["d_model"] == 16
    config.save_pretrained(tmp_path)
    loaded = RagConfig.from_pretrained(tmp_path)
    assert loaded.n_docs == 3 and loaded.title_sep == " | " and loaded.generator.d_model == 16
    assert type(loaded.generator) is BartConfig


def test_rag_config_defaults_and_validation():
    config = RagConfig()
    assert config.question_encoder.model_type == "dpr" and config.generator.model_type == "bart"
    assert (config.n_docs, config.retrieval_batch_size, config.doc_sep) == (5, 8, " // ")
    with pytest.raises(ValueError, match="n_docs"):
        RagConfig(n_docs=0)


def test_from_question_encoder_generator_configs_keeps_kwargs():
    config = RagConfig.from_question_encoder_generator_configs(DPRConfig(), tiny_bart(), n_docs=2, max_combined_length=16)
    assert (config.n_docs, config.max_combined_length, config.generator.vocab_size) == (2, 16, 40)


# --- PyTorch model API ----------------------------------------------------------------------------------
def test_decoder_cache_name_matches_seq2seq_outputs():
    names = {f.name for f in dataclasses.fields(transformers.modeling_outputs.Seq2SeqLMOutput)}
    assert compat.CACHE_KWARG in names
    assert {f.name for f in dataclasses.fields(ragmodels.RetrievAugLMOutput)} >= {compat.CACHE_KWARG}


def test_output_fields_match_transformers_rag_outputs():
    from transformers.models.rag import modeling_rag  # the reference, as oracle

    for ours, ref in ((ragmodels.RetrievAugLMOutput, modeling_rag.RetrievAugLMOutput),
                      (ragmodels.RetrievAugLMMarginOutput, modeling_rag.RetrievAugLMMarginOutput)):
        assert [f.name for f in dataclasses.fields(ours)] == [f.name for f in dataclasses.fields(ref)]


def test_generator_takes_and_returns_the_cache_under_that_name():
    torch.manual_seed(0)
    model = BartForConditionalGeneration(tiny_bart()).eval()
    ids = torch.tensor([[0, 5, 6, 2]])
    with torch.no_grad():
        first = model(input_ids=ids, decoder_input_ids=torch.tensor([[2, 7]]), use_cache=True, **compat.cache_kwargs(None))
        cache = compat.output_cache(first)
        assert isinstance(cache, transformers.cache_utils.EncoderDecoderCache)
        step = model(input_ids=ids, decoder_input_ids=torch.tensor([[8]]), use_cache=True, **compat.cache_kwargs(cache))
        full = model(input_ids=ids, decoder_input_ids=torch.tensor([[2, 7, 8]]), use_cache=False)
    # the cached step recomputes the same float32 ops on the same inputs: equal up to reassociation
    torch.testing.assert_close(step.logits[:, -1], full.logits[:, -1], rtol=1e-5, atol=1e-5)


@needs_torch_models
def test_cache_layers_hold_given_keys_and_values():
    from transformers.cache_utils import DynamicCache, DynamicLayer, EncoderDecoderCache

    keys, values = torch.ones(2, 1, 3, 4), torch.zeros(2, 1, 3, 4)
    layer = DynamicLayer()
    layer.lazy_initialization(keys, values)
    layer.keys, layer.values = keys, values
    self_cache, cross_cache = DynamicCache(), DynamicCache()
    cross_cache.layers.append(layer)
    cache = EncoderDecoderCache(self_cache, cross_cache)
    cache.is_updated[0] = True
    assert cache.cross_attention_cache.layers[0].keys is keys and cache.is_updated[0] is True
    assert cache.self_attention_cache is self_cache and layer.is_initialized


def test_pretrained_model_attention_flags_exist():
    for flag in ("_supports_sdpa", "_supports_flash_attn"):
        assert hasattr(transformers.PreTrainedModel, flag), flag


# --- generation internals the decoding loop drives ---------------------------------------------------------
@needs_torch_models
def test_generation_mixin_private_steps_take_our_arguments():
    from transformers import GenerationMixin

    expected = {
        "_prepare_generation_config": {"generation_config"},
        "_prepare_special_tokens": {"generation_config", "kwargs_has_attention_mask"},
        "_prepare_generated_length": {"generation_config", "has_default_max_length", "has_default_min_length",
                                      "model_input_name", "input_ids_length", "inputs_tensor"},
        "_get_logits_processor": {"generation_config", "input_ids_seq_length", "encoder_input_ids",
                                  "prefix_allowed_tokens_fn", "logits_processor", "device"},
        "_get_stopping_criteria": {"generation_config", "stopping_criteria"},
    }
    for name, params in expected.items():
        assert params <= set(inspect.signature(getattr(GenerationMixin, name)).parameters), name


@needs_torch_models
def test_generation_config_preparation_as_the_loop_uses_it():
    from transformers.generation.utils import GenerationMode

    model = BartForConditionalGeneration(tiny_bart())
    config, unused = compat.prepare_generation_config(model, GenerationConfig(), {"num_beams": 3, "max_new_tokens": 4})
    assert (config.num_beams, unused) == (3, {})
    assert config.get_generation_mode() == GenerationMode.BEAM_SEARCH
    compat.prepare_special_tokens(model, config)
    assert compat.eos_token_tensor(config).tolist() == [2]
    compat.prepare_generated_length(model, config, has_default_max_length=True, has_default_min_length=True)
    assert config.max_length == 5  # max_new_tokens after one decoder start token
    processors = compat.logits_processors(
        model, config, input_ids_seq_length=1, encoder_input_ids=torch.tensor([[0, 2]]),
        prefix_allowed_tokens_fn=None, logits_processor=transformers.LogitsProcessorList(), device="cpu",
    )
    assert isinstance(processors, transformers.LogitsProcessorList)
    criteria = compat.stopping_criteria(model, config, transformers.StoppingCriteriaList())
    assert any(isinstance(c, transformers.MaxLengthCriteria) for c in criteria)
    for mode in (GenerationMode.GREEDY_SEARCH, GenerationMode.SAMPLE, GenerationMode.BEAM_SEARCH):
        assert callable(compat.decoding_loop(mode))


# --- the version gate -------------------------------------------------------------------------------------
def test_pytorch_models_build_or_name_the_version_they_need():
    config = RagConfig.from_question_encoder_generator_configs(
        DPRConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8), tiny_bart(),
        retrieval_vector_size=8,
    )
    if compat.torch_models_supported():
        assert ragmodels.RagTokenForGeneration(config).rag.generator.config.d_model == 16
    else:
        with pytest.raises(ImportError, match=f"transformers>={compat.TORCH_MODELS_MIN_VERSION}.*{transformers.__version__}"):
            ragmodels.RagTokenForGeneration(config)
        with pytest.raises(ImportError, match=compat.TORCH_MODELS_MIN_VERSION):
            ragmodels.RagModel.from_pretrained("no-such-folder")


# --- tokenizer and retriever: framework-neutral, on every version ----------------------------------------
def test_rag_tokenizer_round_trips_both_tokenizers(tmp_path, question_tokenizer, bart_tokenizer):
    tokenizer = ragmodels.RagTokenizer(question_tokenizer, bart_tokenizer)
    tokenizer.save_pretrained(tmp_path)
    loaded = ragmodels.RagTokenizer.from_pretrained(tmp_path)
    question = "What is the capital of Peru?"
    assert loaded(question)["input_ids"] == question_tokenizer(question)["input_ids"]
    assert loaded.generator("Lima")["input_ids"] == bart_tokenizer("Lima")["input_ids"]


def test_retriever_returns_contexts_of_the_nearest_passages(question_tokenizer, bart_tokenizer, make_retriever):
    import numpy as np
    from conftest import passage_embeddings, tiny_rag_config

    config = tiny_rag_config(bart_tokenizer, n_docs=2)
    retriever = make_retriever(config, bart_tokenizer)
    question_ids = question_tokenizer(["capital of Peru", "who found oxygen"], padding=True)["input_ids"]
    embeddings = passage_embeddings()
    vectors = embeddings[[2, 11]]  # query with two passages' own embeddings
    out = retriever(question_ids, vectors, return_tensors="np")
    expected = np.argsort(-(vectors @ embeddings.T), axis=1, kind="stable")[:, :2]  # brute-force inner-product top 2
    assert out["doc_ids"].tolist() == expected.tolist()
    assert out["context_input_ids"].shape[0] == 2 * 2 and out["retrieved_doc_embeds"].shape[:2] == (2, 2)
