"""What users run instead of loraflow, measured on the GPU machine: PyTorch + PEFT +
transformers training 4 LoRA adapters one after another (rank 16 on q/k/v/o, seq 512, batch 8
as 4 micro-batches of 2, AdamW) on a Llama-2-7B-shaped model with random bf16 weights; and the
cuBLAS bf16 GEMM rate of this GPU (torch.matmul), so loraflow's figures can be given as a
fraction of it. Prints one JSON object. Run by bench/gpu/check.sh."""
import json
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

ADAPTERS, RANK, SEQ, MICRO, ACCUM = 4, 16, 512, 2, 4
WARMUP, TIMED = 2, 4


def gemm_rate(n=8192, repeats=20):
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def main():
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096)
    with torch.device("cuda"):
        base = LlamaForCausalLM(config).to(torch.bfloat16)
    base.config.use_cache = False
    # Model FLOPs per token, as loraflow_engine_run counts them: every GEMM weight (the layers'
    # and the head's) forward (2 per weight) and for the input gradient (2 more; the frozen base
    # gets no weight gradient), and causal attention, 2 * seq * hidden per layer forward and
    # twice that backward. LoRA's own FLOPs (under 1% at rank 16) are left out on both sides.
    linear = sum(m.weight.numel() for m in base.modules() if isinstance(m, torch.nn.Linear))
    flops_per_token = 4 * linear + 6 * config.num_hidden_layers * SEQ * config.hidden_size
    tokens = torch.randint(0, config.vocab_size, (ACCUM * MICRO, SEQ), device="cuda")
    per_adapter = []
    model = base
    for a in range(ADAPTERS):
        lora = LoraConfig(r=RANK, lora_alpha=2 * RANK, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], lora_dropout=0.0, task_type="CAUSAL_LM")
        model = get_peft_model(base, lora, adapter_name=f"a{a}") if a == 0 else model
        if a > 0:
            model.add_adapter(f"a{a}", lora)
        model.set_adapter(f"a{a}")
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4)
        times = []
        for step in range(WARMUP + TIMED):
            torch.cuda.synchronize()
            start = time.perf_counter()
            for m in range(ACCUM):
                batch = tokens[m * MICRO:(m + 1) * MICRO]
                loss = model(input_ids=batch, labels=batch).loss / ACCUM
                loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            if step >= WARMUP:
                times.append(time.perf_counter() - start)
        per_adapter.append(sum(times) / len(times))
    tokens_per_step = ACCUM * MICRO * SEQ
    seconds = sum(per_adapter)
    flops = ADAPTERS * tokens_per_step * flops_per_token
    rate = gemm_rate()
    print(json.dumps({
        "torch": torch.__version__, "gpu": torch.cuda.get_device_name(0),
        "adapters": ADAPTERS, "tokens_per_step": tokens_per_step, "seconds_per_step": per_adapter,
        "tokens_per_second": ADAPTERS * tokens_per_step / seconds,
        "flops_per_token": flops_per_token, "model_flops_per_second": flops / seconds, "gemm_bf16_flops_per_second": rate,
        "fraction_of_gemm_rate": flops / seconds / rate,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
    }))


if __name__ == "__main__":
    sys.exit(main())
