namespace CondenseCluster.Shared.Data;

/// <summary>One split (train or test) of a labelled image dataset, addressable by sample index.</summary>
public interface IImageDataset
{
    /// <summary>What was loaded and from where, for the log (e.g. "fashion-mnist train: 60,000 images from /usr/share/...").</summary>
    string Description { get; }
    int Count { get; }
    int NumClasses { get; }
    int Channels { get; }
    /// <summary>Side of the square image the model receives (32 for Fashion-MNIST and CIFAR, 224 for ImageNet).</summary>
    int Size { get; }

    int Label(int index);

    /// <summary>
    /// Writes sample <paramref name="index"/> as normalised CHW floats (Channels·Size·Size) into <paramref name="destination"/>.
    /// With an augmentation generator the training transform is applied (random crops, flips), drawn only from that
    /// generator; without one, the deterministic evaluation transform. Thread-safe.
    /// </summary>
    void Read(int index, Span<float> destination, Random? augmentation);
}
