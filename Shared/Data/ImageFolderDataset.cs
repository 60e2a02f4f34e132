using System.Globalization;
using SkiaSharp;

namespace CondenseCluster.Shared.Data;

/// <summary>
/// ImageNet-style image folders, <c>split/&lt;class&gt;/&lt;image&gt;</c>, decoded from disk on every read with SkiaSharp.
/// Training: RandomResizedCrop(Size, scale 0.08–1, ratio 3/4–4/3) + horizontal flip; evaluation: Resize(ResizeSize) +
/// CenterCrop(Size). Normalised with the ImageNet mean and std. Images are decoded as RGB (grayscale ones replicated),
/// ignoring EXIF orientation and colour profiles, as torchvision's PIL loader does.
/// </summary>
public sealed class ImageFolderDataset : IImageDataset
{
    /// <summary>The formats SkiaSharp decodes among torchvision's image extensions.</summary>
    static readonly string[] Extensions = [".jpg", ".jpeg", ".png", ".bmp", ".webp"];
    static readonly SKSamplingOptions Bilinear = new(SKFilterMode.Linear), Mipmapped = new(SKFilterMode.Linear, SKMipmapMode.Linear);

    readonly string[] files;
    readonly int[] labels;

    /// <summary>
    /// The images of <paramref name="folder"/>'s class subfolders; label i is <paramref name="classNames"/>[i]. Files are
    /// taken in ordinal order of their names within each class.
    /// </summary>
    public ImageFolderDataset(string name, string folder, IReadOnlyList<string> classNames, int size = 224, int resizeSize = 256)
    {
        if (size > resizeSize) throw new ArgumentException($"the crop ({size}) must not exceed the resize ({resizeSize})");
        var fileList = new List<string>();
        var labelList = new List<int>();
        for (int label = 0; label < classNames.Count; label++)
        {
            string classFolder = Path.Combine(folder, classNames[label]);
            if (!Directory.Exists(classFolder))
                throw new DirectoryNotFoundException($"'{folder}' has no folder for class '{classNames[label]}'");
            var images = Directory.EnumerateFiles(classFolder)
                .Where(file => Extensions.Contains(Path.GetExtension(file), StringComparer.OrdinalIgnoreCase))
                .Order(StringComparer.Ordinal)
                .ToList();
            if (images.Count == 0)
                throw new DataFormatException($"'{classFolder}' holds no images ({string.Join(", ", Extensions)})");
            fileList.AddRange(images);
            labelList.AddRange(Enumerable.Repeat(label, images.Count));
        }
        (files, labels, ClassNames, Size, ResizeSize) = ([.. fileList], [.. labelList], classNames, size, resizeSize);
        Description = string.Create(CultureInfo.InvariantCulture, $"{name}: {files.Length:N0} images in {classNames.Count:N0} classes from {folder}");
    }

    /// <summary>
    /// The evaluation resize for a crop of <paramref name="size"/>: the official 256 for 224, the same ratio for other
    /// resolutions (73 for 64), so that a reduced-resolution run sees the same part of each image.
    /// </summary>
    public static int ResizeFor(int size) => (int)Math.Round(size * 256.0 / 224);

    /// <summary>How many class folders <c>root/train</c> holds (0 when it does not exist: <see cref="Open"/> says what is wrong).</summary>
    public static int CountClasses(string root)
    {
        string train = Path.Combine(root, "train");
        return Directory.Exists(train) ? ClassFolders(train).Length : 0;
    }

    /// <summary>
    /// <c>root/train</c> and <c>root/val</c>; the classes are the sorted folder names of train, and val must have the same.
    /// </summary>
    public static (ImageFolderDataset Train, ImageFolderDataset Test) Open(string root, string name = "imagenet", int size = 224, int resizeSize = 256)
    {
        string train = Path.Combine(root, "train"), val = Path.Combine(root, "val");
        foreach (string folder in new[] { train, val })
            if (!Directory.Exists(folder))
                throw new DirectoryNotFoundException(
                    $"'{folder}' does not exist: an image-folder dataset needs '{root}/train/<class>/<image>.JPEG' and '{root}/val/<class>/<image>.JPEG'");

        string[] classes = ClassFolders(train);
        if (classes.Length == 0) throw new DataFormatException($"'{train}' has no class folders");
        string[] valClasses = ClassFolders(val);
        if (!classes.SequenceEqual(valClasses))
        {
            var onlyTrain = classes.Except(valClasses).Take(5).ToList();
            var onlyVal = valClasses.Except(classes).Take(5).ToList();
            throw new DataFormatException(
                $"'{val}' must have the same class folders as '{train}' ({classes.Length} in train, {valClasses.Length} in val): " +
                $"missing in val: [{string.Join(", ", onlyTrain)}], not in train: [{string.Join(", ", onlyVal)}] (at most 5 of each shown)");
        }
        return (new ImageFolderDataset($"{name} train", train, classes, size, resizeSize),
                new ImageFolderDataset($"{name} val", val, classes, size, resizeSize));
    }

    public string Description { get; }
    public IReadOnlyList<string> ClassNames { get; }
    public int ResizeSize { get; }
    public int Count => files.Length;
    public int NumClasses => ClassNames.Count;
    public int Channels => 3;
    public int Size { get; }

    public int Label(int index) => labels[CheckIndex(index)];

    public void Read(int index, Span<float> destination, Random? augmentation)
    {
        string path = files[CheckIndex(index)];
        using var codec = SKCodec.Create(path, out var created)
            ?? throw new DataFormatException($"'{path}' is not a readable image ({created})");
        int width = codec.Info.Width, height = codec.Info.Height;
        // The crop is drawn in the full image's coordinates, so that it does not depend on the size it is decoded at.
        var (box, flip) = augmentation is null
            ? (ImageTransforms.ResizeThenCenterCrop(width, height, ResizeSize, Size), false)
            : (ImageTransforms.RandomResizedCrop(augmentation, width, height), ImageTransforms.RandomFlip(augmentation));

        using var decoded = Decode(codec, path, DecodeSize(codec, box));
        double scaleX = (double)decoded.Width / width, scaleY = (double)decoded.Height / height;
        var source = SKRect.Create((float)(box.X * scaleX), (float)(box.Y * scaleY), (float)(box.Width * scaleX), (float)(box.Height * scaleY));
        // Bilinear sampling reaches every source pixel up to a reduction of 2; beyond that (non-JPEG images, or more than 8x)
        // mipmaps keep it from aliasing. Building them costs more than the draw, so only then.
        var sampling = Math.Max(source.Width, source.Height) > 2 * Size ? Mipmapped : Bilinear;

        using var output = new SKBitmap(new SKImageInfo(Size, Size, SKColorType.Rgba8888, SKAlphaType.Premul));
        using (var image = SKImage.FromPixels(decoded.PeekPixels()))
        using (var canvas = new SKCanvas(output))
        {
            canvas.Clear(SKColors.Black);
            canvas.DrawImage(image, source, SKRect.Create(Size, Size), sampling);
        }
        var pixels = ByteImage.Interleaved(output.GetPixelSpan(), Size, Size, bytesPerPixel: 4, output.RowBytes);
        ImageTransforms.WriteNormalized(pixels, 0, 0, flip, Normalization.ImageNet, destination, Size);
    }

    /// <summary>
    /// JPEG decoders reduce by k/8 while decoding, almost for free and averaging (anti-aliased): the smallest such size
    /// at which the crop still covers the output, or the full size (other formats, or a crop that needs every pixel).
    /// </summary>
    SKSizeI DecodeSize(SKCodec codec, CropBox box)
    {
        var full = codec.Info.Size;
        for (int eighths = 1; eighths < 8; eighths++)
        {
            var scaled = codec.GetScaledDimensions(eighths / 8f);
            if (box.Width * scaled.Width / full.Width >= Size && box.Height * scaled.Height / full.Height >= Size) return scaled;
        }
        return full;
    }

    static SKBitmap Decode(SKCodec codec, string path, SKSizeI size)
    {
        var info = new SKImageInfo(size.Width, size.Height, SKColorType.Rgba8888, SKAlphaType.Premul);
        var bitmap = new SKBitmap(info);
        var result = codec.GetPixels(info, bitmap.GetPixels());
        if (result != SKCodecResult.Success)
        {
            bitmap.Dispose();
            throw new DataFormatException($"'{path}' could not be decoded: {result} (a truncated or corrupt image)");
        }
        return bitmap;
    }

    static string[] ClassFolders(string folder) =>
        [.. Directory.EnumerateDirectories(folder).Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal)];

    int CheckIndex(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, Count);
        return index;
    }
}
