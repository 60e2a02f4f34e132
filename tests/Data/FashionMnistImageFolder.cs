using CondenseCluster.Shared.Data;
using SkiaSharp;

namespace CondenseCluster.Tests.Data;

/// <summary>
/// A small ImageNet-layout tree, <c>root/{train,val}/&lt;class&gt;/&lt;image&gt;.JPEG</c>, of real images: those of the
/// bundled Fashion-MNIST subset's first classes (train from its train split, val from its test split), each 28x28
/// grayscale image scaled up to an RGB JPEG of its own width and height, as ImageNet's photos come in many sizes.
/// </summary>
static class FashionMnistImageFolder
{
    static readonly string[] ClassNames = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"];
    const int MinSide = 40, MaxSide = 160, Quality = 90;

    /// <summary>Writes the tree under <paramref name="root"/> and returns its class names (folder names, in label order).</summary>
    public static string[] Write(string root, int classes, int trainPerClass, int valPerClass, int seed = 0)
    {
        if (classes is < 1 or > FashionMnist.NumClasses) throw new ArgumentOutOfRangeException(nameof(classes), $"Fashion-MNIST has {FashionMnist.NumClasses} classes");
        var random = new Random(seed);
        string source = FashionMnist.BundledDirectory;
        foreach (var (split, images, labels, perClass) in new[]
                 {
                     ("train", "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", trainPerClass),
                     ("val", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", valPerClass),
                 })
        {
            var pixels = IdxFile.ReadImages(Path.Combine(source, images));
            byte[] label = IdxFile.ReadLabels(Path.Combine(source, labels), FashionMnist.NumClasses);
            for (int c = 0; c < classes; c++)
            {
                string folder = Directory.CreateDirectory(Path.Combine(root, split, ClassNames[c])).FullName;
                int[] ofClass = [.. Enumerable.Range(0, label.Length).Where(i => label[i] == c).Take(perClass)];
                if (ofClass.Length < perClass) throw new ArgumentOutOfRangeException(nameof(perClass), $"the bundled {split} split has {ofClass.Length} images of class {c}");
                foreach (int i in ofClass)
                {
                    var image = pixels.Pixels.Span.Slice(i * pixels.Rows * pixels.Columns, pixels.Rows * pixels.Columns);
                    File.WriteAllBytes(Path.Combine(folder, $"{split}_{i:D5}.JPEG"),
                        ScaledJpeg(image, pixels.Columns, pixels.Rows, random.Next(MinSide, MaxSide + 1), random.Next(MinSide, MaxSide + 1)));
                }
            }
        }
        return ClassNames[..classes];
    }

    static byte[] ScaledJpeg(ReadOnlySpan<byte> gray, int width, int height, int toWidth, int toHeight)
    {
        var rgba = new byte[4 * gray.Length];
        for (int p = 0; p < gray.Length; p++)
        {
            rgba[4 * p] = rgba[4 * p + 1] = rgba[4 * p + 2] = gray[p];
            rgba[4 * p + 3] = 255;
        }
        using var source = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        System.Runtime.InteropServices.Marshal.Copy(rgba, 0, source.GetPixels(), rgba.Length);
        using var scaled = new SKBitmap(new SKImageInfo(toWidth, toHeight, SKColorType.Rgba8888, SKAlphaType.Opaque));
        source.ScalePixels(scaled, new SKSamplingOptions(SKCubicResampler.Mitchell));
        using var data = scaled.Encode(SKEncodedImageFormat.Jpeg, Quality);
        return data.ToArray();
    }
}
