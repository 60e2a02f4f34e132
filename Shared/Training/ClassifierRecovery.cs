using CondenseCluster.Shared.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace CondenseCluster.Shared.Training;

/// <summary>
/// The official conversion prunes half of the classifier's inputs without fine-tuning, which costs a lot of accuracy
/// after short trainings. Refitting the pruned classifier on frozen training features (conversion leaves the features
/// themselves unchanged) recovers it cheaply: a few hundred SGD steps of logistic regression, started from the pruned weights.
/// </summary>
public static class ClassifierRecovery
{
    public const double InitialLearningRate = 0.1;

    /// <summary>Fits <paramref name="classifier"/> on features [N, F] (all inputs, before its index) and labels [N].</summary>
    public static void Fit(CondensedLinear classifier, Tensor features, Tensor labels, int steps, int seed, int batchSize = 256)
    {
        if (steps == 0) return;
        using var kept = features.index_select(1, classifier.Index).detach();
        var parameters = classifier.Linear.parameters().ToArray();
        using var gradients = new GradientBuffer(parameters, kept.device);
        using var optimizer = new NesterovSgd(parameters);
        var generator = new Generator((ulong)seed, kept.device);
        long n = kept.shape[0];
        for (int step = 0; step < steps; step++)
        {
            using var scope = torch.NewDisposeScope();
            var rows = torch.randint(0, n, [Math.Min(batchSize, n)], generator: generator, device: kept.device);
            gradients.Zero();
            nn.functional.cross_entropy(classifier.Linear.forward(kept.index_select(0, rows)), labels.index_select(0, rows)).backward();
            optimizer.Step(LearningRate.Cosine(InitialLearningRate, step, steps));
        }
    }
}
