namespace CondenseCluster.Shared.Data;

/// <summary>
/// torchvision's <c>ToTensor()</c> + <c>Normalize(mean, std)</c> for 8-bit pixels: <c>(v / 255 − mean) / std</c> per channel, in
/// float32 as PyTorch computes it, kept as a 256-entry table per channel so that each pixel costs one lookup.
/// </summary>
public sealed class Normalization
{
    public static Normalization FashionMnist { get; } = new([0.2860f], [0.3530f]);
    public static Normalization Cifar10 { get; } = new([0.4914f, 0.4824f, 0.4467f], [0.2471f, 0.2435f, 0.2616f]);
    public static Normalization Cifar100 { get; } = new([0.5071f, 0.4867f, 0.4408f], [0.2675f, 0.2565f, 0.2761f]);
    public static Normalization ImageNet { get; } = new([0.485f, 0.456f, 0.406f], [0.229f, 0.224f, 0.225f]);

    /// <summary>The normalisation the loader of a dataset (by its command-line name) applies.</summary>
    public static Normalization Of(string dataset) => dataset switch
    {
        "fashion-mnist" => FashionMnist,
        "cifar10" => Cifar10,
        "cifar100" => Cifar100,
        "imagenet" => ImageNet,
        _ => throw Datasets.Unknown(dataset),
    };

    readonly float[] table;

    public Normalization(float[] mean, float[] std)
    {
        if (mean.Length == 0 || mean.Length != std.Length) throw new ArgumentException("mean and std need one value per channel");
        (Mean, Std) = (mean, std);
        Channels = mean.Length;
        table = new float[Channels * 256];
        for (int c = 0; c < Channels; c++)
            for (int v = 0; v < 256; v++)
                table[c * 256 + v] = (v / 255f - mean[c]) / std[c];
    }

    public int Channels { get; }
    public IReadOnlyList<float> Mean { get; }
    public IReadOnlyList<float> Std { get; }

    public float Apply(int channel, byte value) => table[channel * 256 + value];
}
