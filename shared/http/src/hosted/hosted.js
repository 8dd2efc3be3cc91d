"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var pay = document.getElementById("pay-form");
  var auth = document.getElementById("authenticate-form");
  function busy(form) {
    var button = form.querySelector("button");
    if (button) { button.disabled = true; }
  }
  function fail(message) {
    var box = document.getElementById("error");
    if (!box) {
      box = document.createElement("div");
      box.className = "error";
      box.id = "error";
      (pay || auth).prepend(box);
    }
    box.textContent = message;
  }
  if (pay && pay.dataset.stripeKey && window.Stripe) {
    var stripe = window.Stripe(pay.dataset.stripeKey);
    var card = stripe.elements().create("card");
    card.mount("#card-element");
    pay.addEventListener("submit", function (event) {
      event.preventDefault();
      busy(pay);
      stripe.createPaymentMethod({ type: "card", card: card }).then(function (result) {
        if (result.error) {
          fail(result.error.message);
          pay.querySelector("button").disabled = false;
          return;
        }
        document.getElementById("card").value = result.paymentMethod.id;
        pay.submit();
      });
    });
  } else if (pay) {
    pay.addEventListener("submit", function () { busy(pay); });
  }
  if (auth && auth.dataset.clientSecret && window.Stripe) {
    var stripe3ds = window.Stripe(auth.dataset.stripeKey);
    auth.addEventListener("submit", function (event) {
      event.preventDefault();
      busy(auth);
      stripe3ds.confirmCardPayment(auth.dataset.clientSecret).then(function (result) {
        if (result.error) { fail(result.error.message); }
        auth.submit();
      });
    });
  } else if (auth) {
    auth.addEventListener("submit", function () { busy(auth); });
  }
});
