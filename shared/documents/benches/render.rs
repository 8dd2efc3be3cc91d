//! `cargo bench -p billing-documents --bench render`: one invoice (four lines, appendix,
//! two pages) and one credit note rendered in process; criterion reports the median.

#[path = "../tests/sample/mod.rs"]
mod sample;

use criterion::{criterion_group, criterion_main, Criterion};

fn render(c: &mut Criterion) {
    let invoice = sample::invoice();
    let branding = sample::branding();
    let note = sample::credit_note(&invoice);
    let bytes = billing_documents::render_invoice(&invoice, &branding, None)
        .unwrap()
        .bytes;
    eprintln!("invoice PDF: {} bytes", bytes.len());
    let mut group = c.benchmark_group("render");
    group.sample_size(100);
    group.bench_function("invoice", |b| {
        b.iter(|| {
            billing_documents::render_invoice(&invoice, &branding, None)
                .unwrap()
                .bytes
        })
    });
    group.bench_function("credit_note", |b| {
        b.iter(|| {
            billing_documents::render_credit_note(&note, &invoice, &branding, None)
                .unwrap()
                .bytes
        })
    });
    group.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
