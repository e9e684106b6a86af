mod grad;
mod energy;
