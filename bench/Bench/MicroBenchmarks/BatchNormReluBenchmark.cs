using BenchmarkDotNet.Attributes;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace CondenseCluster.Bench.MicroBenchmarks;

/// <summary>
/// Training-mode BN → ReLU, forward + backward: libtorch's batch_norm then an in-place relu (what the model ran before)
/// against <see cref="BatchNormReluKernel"/>. The shapes are the inputs of the learned group convolution of
/// denselayer_8 of CondenseNet-86's three blocks, whose maps are 32x32, 16x16 and 8x8 on 32x32 inputs, at batch 64.
/// </summary>
public class BatchNormReluBenchmark
{
    const int BatchSize = 64;

    [Params("72x32x32", "240x16x16", "576x8x8")]
    public string Shape { get; set; } = "";

    BatchNorm norm = null!;
    Tensor input = null!, outputGradient = null!;

    [GlobalSetup]
    public void Setup()
    {
        TorchRuntime.SetThreads(MicroSuite.TorchThreads);
        torch.manual_seed(0);
        long[] chw = Shape.Split('x').Select(long.Parse).ToArray();
        norm = new BatchNorm(chw[0]);
        norm.train();
        input = torch.randn([BatchSize, .. chw]).requires_grad_();
        outputGradient = torch.randn([BatchSize, .. chw]);
    }

    [Benchmark(Baseline = true)]
    public void Libtorch() => ForwardBackward(x => norm.forward(x).relu_());

    [Benchmark]
    public void Kernel() => ForwardBackward(norm.ForwardRelu);

    void ForwardBackward(Func<Tensor, Tensor> layer)
    {
        using var scope = torch.NewDisposeScope();
        layer(input).backward([outputGradient]);
        input.grad!.zero_();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        norm.Dispose();
        input.Dispose();
        outputGradient.Dispose();
    }
}
