// The dsedge preprocessing contract (docs/PREPROCESSING.md, manifest "preprocessing_contract") in C++17.
//
// decode_jpeg -> apply_orientation -> resize_shorter (Pillow's antialiased filter, fixed point)
// -> center_crop -> normalise (float32, NCHW). Every step reproduces dsedge.runtime.preprocess
// bit for bit on 8-bit JPEGs; tests/test_cpp_reference.py checks it against the bundle's vectors.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace dsedge {

// An 8-bit interleaved RGB image (3 bytes per pixel, rows top to bottom).
struct Image {
    int width = 0;
    int height = 0;
    std::vector<std::uint8_t> rgb;
};

// What decode_jpeg found besides the pixels.
struct Decoded {
    Image image;
    int orientation = 1;      // EXIF 0x0112, 1 when absent or invalid
    bool has_icc = false;     // an ICC profile is embedded (not converted here: see PREPROCESSING.md)
};

// An image the reference cannot process exactly like the Python runtime (CMYK, ICC, not a JPEG).
struct Unsupported : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct PreprocessParams {
    int resize = 256;                    // shorter side after resizing
    int crop = 224;                      // centred square
    float mean[3] = {0.485f, 0.456f, 0.406f};
    float stdev[3] = {0.229f, 0.224f, 0.225f};
    std::string interpolation = "bilinear";  // or "bicubic"
};

// The file's bytes as 8-bit RGB (grayscale copied into R, G, B), plus its EXIF orientation.
Decoded decode_jpeg(const std::string& path);

// Pillow's ImageOps.exif_transpose for orientation 1..8 (other values: unchanged).
Image apply_orientation(const Image& in, int orientation);

// (width, height) with the shorter side scaled to `shorter`, the longer truncated (torchvision's rule).
void resized_size(int width, int height, int shorter, int* out_w, int* out_h);

// Pillow's Image.resize(size, BILINEAR | BICUBIC) on an 8-bit RGB image: two separable passes of an
// antialiased filter with 22-bit fixed-point coefficients, each pass rounded to uint8.
Image resize_pillow(const Image& in, int out_w, int out_h, const std::string& interpolation);

// The normalised crop x crop float32 tensor in CHW order (R, G, B planes).
std::vector<float> crop_normalise(const Image& in, const PreprocessParams& p);

// All of the above after decoding: orientation, resize, crop, normalise.
std::vector<float> preprocess(const Decoded& decoded, const PreprocessParams& p);

}  // namespace dsedge
